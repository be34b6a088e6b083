// Mock OpenID Connect identity provider for the integration tests.
//
// Wraps oauth2-mock-server 8.2.3 and closes the gaps that make it unlike a
// real provider:
// - the issuer is http://127.0.0.1:<port> (the library advertises localhost);
// - ID tokens, access tokens and userinfo carry `sub`, `email`,
//   `email_verified: true` and `name` of the user who signed in;
// - `/authorize` auto-approves as the user named by the standard OIDC
//   `login_hint` parameter (an email address or only its local part, which
//   gets the domain example.test), and as alice@example.test without one;
// - an authorization code is bound to its user, scope and redirect_uri,
//   expires after 10 minutes and is accepted once;
// - refresh tokens are accepted only if this process issued them and they
//   were not revoked through `/revoke`. A refresh returns the same refresh
//   token, or with --rotate-refresh-tokens a new one that replaces it;
// - `/userinfo` accepts only access tokens this process issued.
//
// Usage: node idp.mjs --port PORT [--key-file PATH] [--rotate-refresh-tokens]
// It listens on 127.0.0.1 only.

import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import { OAuth2Issuer, OAuth2Service } from 'oauth2-mock-server';

const HOST = '127.0.0.1';
const DEFAULT_LOGIN = 'alice@example.test';
const DEFAULT_EMAIL_DOMAIN = 'example.test';
const CODE_TTL_MS = 10 * 60 * 1000;
// oauth2-mock-server 8.2.3 issues access tokens valid for 3600 s.
const ACCESS_TOKEN_TTL_MS = 3600 * 1000;
const PRUNE_INTERVAL_MS = 60 * 1000;
const EMAIL_PATTERN = /^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/;
const MAX_EMAIL_LENGTH = 254;
const MAX_REVOKE_BODY_BYTES = 64 * 1024;

function log(message) {
  console.log(`${new Date().toISOString()} idp ${message}`);
}

function parseCommandLine() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      'key-file': { type: 'string' },
      'rotate-refresh-tokens': { type: 'boolean', default: false },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`invalid --port ${JSON.stringify(values.port)}: expected an integer from 0 to 65535`);
  }
  return {
    port,
    keyFile: values['key-file'],
    rotateRefreshTokens: values['rotate-refresh-tokens'],
  };
}

// Parse a login hint into the identity that signs in, or return undefined
// when the hint is not an email address or a local part.
function identityFromLoginHint(loginHint) {
  const hint = loginHint === undefined || loginHint === '' ? DEFAULT_LOGIN : loginHint;
  const email = hint.includes('@') ? hint : `${hint}@${DEFAULT_EMAIL_DOMAIN}`;
  if (email.length > MAX_EMAIL_LENGTH || !EMAIL_PATTERN.test(email)) {
    return undefined;
  }
  const localPart = email.slice(0, email.indexOf('@'));
  const name = localPart
    .split(/[._+-]+/)
    .filter((word) => word !== '')
    .map((word) => word[0].toUpperCase() + word.slice(1))
    .join(' ');
  return { sub: email, email, email_verified: true, name: name || localPart };
}

// Load the signing key from keyFile, or generate one and write it there, so
// that a restarted provider signs with the key the backend has cached.
async function loadSigningKey(issuer, keyFile) {
  if (keyFile !== undefined && existsSync(keyFile)) {
    await issuer.keys.add(JSON.parse(readFileSync(keyFile, 'utf8')));
    log(`loaded signing key from ${keyFile}`);
    return;
  }
  const jwk = await issuer.keys.generate('RS256');
  if (keyFile !== undefined) {
    writeFileSync(keyFile, JSON.stringify(jwk), { mode: 0o600 });
    log(`wrote new signing key to ${keyFile}`);
  }
}

// Read a small application/x-www-form-urlencoded request body.
function readFormBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_REVOKE_BODY_BYTES) {
        reject(new Error(`request body is larger than ${MAX_REVOKE_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

function sendJson(res, statusCode, body) {
  res.writeHead(statusCode, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}

class ProviderState {
  constructor({ rotateRefreshTokens }) {
    this.rotateRefreshTokens = rotateRefreshTokens;
    // code -> { identity, scope, redirectUri, expiresAt }
    this.codes = new Map();
    // refresh token -> { identity, scope }
    this.refreshTokens = new Map();
    // access token -> { identity, expiresAt }
    this.accessTokens = new Map();
    this.lastPrune = Date.now();
  }

  pruneExpired(now) {
    if (now - this.lastPrune < PRUNE_INTERVAL_MS) {
      return;
    }
    this.lastPrune = now;
    for (const [code, entry] of this.codes) {
      if (entry.expiresAt <= now) this.codes.delete(code);
    }
    for (const [token, entry] of this.accessTokens) {
      if (entry.expiresAt <= now) this.accessTokens.delete(token);
    }
  }

  // Find the grant behind a token request without consuming it: the identity
  // that the tokens about to be signed carry.
  grantForTokenRequest(body) {
    if (body.grant_type === 'authorization_code') {
      const entry = this.codes.get(body.code);
      return entry !== undefined && entry.expiresAt > Date.now() ? entry : undefined;
    }
    if (body.grant_type === 'refresh_token') {
      return this.refreshTokens.get(body.refresh_token);
    }
    return undefined;
  }
}

// Attach the hooks that bind codes and tokens to identities.
//
// oauth2-mock-server 8.2.3 emits beforeAuthorizeRedirect, beforeTokenSigning
// and beforeResponse synchronously inside the handler of the request they
// belong to, so each hook receives the request whose code or token it
// handles, even with many logins in flight.
function installHooks(service, state) {
  service.on('beforeAuthorizeRedirect', (redirect, req) => {
    const code = redirect.url.searchParams.get('code');
    if (code === null) {
      return;
    }
    const loginHint = typeof req.query.login_hint === 'string' ? req.query.login_hint : undefined;
    const identity = identityFromLoginHint(loginHint);
    if (identity === undefined) {
      redirect.url.searchParams.delete('code');
      redirect.url.searchParams.set('error', 'invalid_request');
      redirect.url.searchParams.set(
        'error_description',
        'login_hint must be an email address or the local part of one',
      );
      log(`authorize rejected invalid login_hint ${JSON.stringify(loginHint)}`);
      return;
    }
    state.codes.set(code, {
      identity,
      scope: typeof req.query.scope === 'string' ? req.query.scope : '',
      redirectUri: req.query.redirect_uri,
      expiresAt: Date.now() + CODE_TTL_MS,
    });
    log(`authorize issued code for ${identity.email}`);
  });

  service.on('beforeTokenSigning', (token, req) => {
    const grant = state.grantForTokenRequest(req.body);
    if (grant === undefined) {
      // beforeResponse rejects this request, so the token is never sent.
      return;
    }
    Object.assign(token.payload, grant.identity);
    if (grant.scope !== '' && 'scope' in token.payload) {
      token.payload.scope = grant.scope;
    }
  });

  service.on('beforeResponse', (response, req) => {
    const body = req.body;
    const now = Date.now();
    state.pruneExpired(now);

    const reject = (error, description) => {
      response.statusCode = 400;
      response.body = { error, error_description: description };
      log(`token rejected grant_type=${body.grant_type}: ${description}`);
    };

    let grant;
    if (body.grant_type === 'authorization_code') {
      grant = state.grantForTokenRequest(body);
      // The first redemption attempt consumes the code, whether it succeeds or not.
      state.codes.delete(body.code);
      if (grant === undefined) {
        reject('invalid_grant', 'authorization code is invalid, expired or already used');
        return;
      }
      if (body.redirect_uri !== grant.redirectUri) {
        reject('invalid_grant', 'redirect_uri does not match the authorization request');
        return;
      }
    } else if (body.grant_type === 'refresh_token') {
      grant = state.grantForTokenRequest(body);
      if (grant === undefined) {
        reject('invalid_grant', 'refresh token is invalid or revoked');
        return;
      }
    } else {
      reject('unsupported_grant_type', `grant_type ${JSON.stringify(body.grant_type)} is not supported`);
      return;
    }

    if (grant.scope !== '') {
      response.body.scope = grant.scope;
    }
    if (body.grant_type === 'refresh_token' && !state.rotateRefreshTokens) {
      response.body.refresh_token = body.refresh_token;
    } else {
      if (body.grant_type === 'refresh_token') {
        state.refreshTokens.delete(body.refresh_token);
      }
      state.refreshTokens.set(response.body.refresh_token, { identity: grant.identity, scope: grant.scope });
    }
    state.accessTokens.set(response.body.access_token, {
      identity: grant.identity,
      expiresAt: now + ACCESS_TOKEN_TTL_MS,
    });
    log(`token issued grant_type=${body.grant_type} for ${grant.identity.email}`);
  });

  service.on('beforeUserinfo', (response, req) => {
    const match = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '');
    const entry = match === null ? undefined : state.accessTokens.get(match[1]);
    if (entry === undefined || entry.expiresAt <= Date.now()) {
      response.statusCode = 401;
      response.body = { error: 'invalid_token', error_description: 'access token is invalid or expired' };
      log('userinfo rejected an unknown or expired access token');
      return;
    }
    response.body = { ...entry.identity };
  });
}

// Handle POST /revoke (RFC 7009). oauth2-mock-server does not parse the form
// body of this endpoint, so the wrapper handles it before the library does.
async function handleRevoke(req, res, state) {
  let form;
  try {
    form = await readFormBody(req);
  } catch (error) {
    log(`revoke failed to read the request body: ${error.message}`);
    sendJson(res, 400, { error: 'invalid_request', error_description: error.message });
    return;
  }
  const token = form.get('token');
  if (token === null || token === '') {
    log('revoke rejected a request without a token parameter');
    sendJson(res, 400, { error: 'invalid_request', error_description: 'missing token parameter' });
    return;
  }
  const revokedRefresh = state.refreshTokens.delete(token);
  const revokedAccess = state.accessTokens.delete(token);
  log(`revoke removed ${revokedRefresh ? 'a refresh token' : revokedAccess ? 'an access token' : 'no known token'}`);
  // RFC 7009 section 2.2 requires 200 for an unknown token too.
  res.writeHead(200);
  res.end();
}

async function main() {
  const options = parseCommandLine();
  const issuer = new OAuth2Issuer();
  const service = new OAuth2Service(issuer);
  const state = new ProviderState(options);
  await loadSigningKey(issuer, options.keyFile);
  installHooks(service, state);

  const server = createServer((req, res) => {
    const path = new URL(req.url, 'http://127.0.0.1').pathname;
    if (req.method === 'POST' && path === '/revoke') {
      handleRevoke(req, res, state).catch((error) => {
        log(`revoke failed: ${error.stack}`);
        if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
      });
      return;
    }
    service.requestHandler(req, res);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, HOST, resolve);
  });
  const { port } = server.address();
  issuer.url = `http://${HOST}:${port}`;
  log(`listening, issuer ${issuer.url}`);

  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
      log(`received ${signal}, stopping`);
      process.exit(0);
    });
  }
}

main().catch((error) => {
  log(`startup failed: ${error.stack}`);
  process.exit(1);
});
