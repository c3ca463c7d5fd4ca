"""``python -m mpc_dc``."""

import sys

from mpc_dc.cli import main

sys.exit(main())
