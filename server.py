"""Entry point: `python server.py`, `mcp run server.py` and `mcp dev server.py`.

`mcp run` and `mcp dev` import this file and look for the module-level
`mcp` object; `python server.py` runs the full command line instead.
"""

import sys

from backstage_auth.cli import configure_logging, main
from backstage_auth.settings import Settings
from backstage_auth.tools import create_server

_settings = Settings()
configure_logging(_settings.log_level)
mcp = create_server(_settings)

if __name__ == "__main__":
    sys.exit(main())
