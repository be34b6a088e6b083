"""Entry point: `python server.py`, `mcp run server.py` and `mcp dev server.py`.

`python server.py [flags]` runs the full command line. `mcp run` and `mcp dev`
import this file instead and use the module-level `mcp` server, configured
from environment variables.
"""

import sys

from backstage_auth.cli import configure_logging, main
from backstage_auth.settings import Settings
from backstage_auth.tools import create_server

if __name__ == "__main__":
    sys.exit(main())

_settings = Settings()
configure_logging(_settings.log_level)
mcp = create_server(_settings)
