"""The real daemon (`python -m tests.leaky_store_runner run --config FILE`) whose store reads fail with an
error that quotes a secret, as a driver error quoting a connection string would.

Used by tests/test_log_scrub.py: the uptime refresh logs the failure with `log.exception` (structlog),
and `GET /api/v1/targets/self/uptime` makes aiohttp log "Error handling request" with the traceback
(stdlib logging).
The secret comes from TTHC_LEAKED_SECRET, which the config also names as the API token.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from monitor.cli.main import main
from monitor.store import SqliteStore


async def _failing_read(self: SqliteStore, *_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError(f"database is locked (dsn=file:monitor.db?key={os.environ['TTHC_LEAKED_SECRET']})")


if __name__ == "__main__":
    SqliteStore.uptime_all = _failing_read  # type: ignore[method-assign]
    SqliteStore.uptime = _failing_read  # type: ignore[method-assign]
    sys.exit(main(sys.argv[1:]))
