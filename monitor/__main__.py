"""`python -m monitor` is the same as the `tthc-monitor` command."""

import sys

from monitor.cli import main

sys.exit(main())
