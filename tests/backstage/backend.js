// Backstage backend with only the auth plugin and its guest and oidc
// providers, for the integration tests. Run it with
//   NODE_ENV=development node backend.js --config app-config.yaml
// and BS_PORT, APP_PORT and IDP_PORT set (see app-config.yaml).

const { createBackend } = require('@backstage/backend-defaults');

const backend = createBackend();
backend.add(require('@backstage/plugin-auth-backend'));
backend.add(require('@backstage/plugin-auth-backend-module-guest-provider'));
backend.add(require('@backstage/plugin-auth-backend-module-oidc-provider'));
backend.start();
