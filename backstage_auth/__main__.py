"""`python -m backstage_auth` runs the command line."""

import sys

from backstage_auth.cli import main

sys.exit(main())
