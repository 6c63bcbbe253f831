"""`python -m monitor` is the same as the `tthc-monitor` command."""

import sys

from monitor.cli.main import main

sys.exit(main())
