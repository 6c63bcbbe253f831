"""`python -m monitor.simulator --listen 127.0.0.1:9480`: run the simulator until SIGINT."""

from __future__ import annotations

import sys

from monitor.simulator.runner import main

if __name__ == "__main__":
    sys.exit(main())
