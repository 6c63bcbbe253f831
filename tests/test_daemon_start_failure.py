"""A daemon whose start fails part-way (its listen port is busy, after the store, the replica and every
service started) undoes what it started before raising: no store connection, thread, task or replica
membership outlives the failed start. On both engines.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from monitor.config import load_config_text
from monitor.daemon import Daemon
from tests.store_engines import StoreFactory


def _open_handles(store_file: Path, postgres_port: int | None) -> list[str]:
    """This process's descriptors on the store: the SQLite file (and its -wal/-shm), or TCP connections
    to the PostgreSQL server's port (read from /proc, as `ls -l /proc/PID/fd` and `ss` would)."""
    links: list[str] = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # closed between listing and reading (the listing's own descriptor)
    if postgres_port is None:
        return [link for link in links if link.startswith(str(store_file))]
    sockets = {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}
    found = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table, encoding="ascii") as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == postgres_port and fields[9] in sockets:
                    found.append(f"{fields[1]} -> {fields[2]}")
    return found


def _config(stores: StoreFactory, store_file: Path, listen_port: int) -> str:
    config = {
        "listen": f"127.0.0.1:{listen_port}",
        "logging": {"format": "json"},
        "store": stores.config(store_file),
        "replicas": {"lease": "3s"},
        "targets": [
            {
                "name": "portal",
                "type": "tcp",
                "host": "127.0.0.1",
                "port": listen_port,
                "interval": "1s",
                "timeout": "1s",
            }
        ],
    }
    return json.dumps(config)


async def test_a_start_that_fails_at_the_listen_port_leaves_nothing_running(
    tmp_path: Path, stores: StoreFactory, silent_port: int
) -> None:
    """Listen port busy: start raises OSError after undoing the store, replica, keepalive, services."""
    store_file = tmp_path / "store.db"
    postgres_port = int((stores.url or "").rsplit(":", 1)[1].split("/")[0]) if stores.postgres else None
    threads_before = set(threading.enumerate())
    tasks_before = asyncio.all_tasks()
    daemon = Daemon(load_config_text(_config(stores, store_file, silent_port), environ={}))
    with capture_logs() as logs, pytest.raises(OSError, match="address already in use"):
        await daemon.start()
    events = [entry["event"] for entry in logs]
    # Each undo step ran cleanly (none logged a failure) after the store and services had started.
    assert "daemon_start_failed" in events and "daemon_stop_step_failed" not in events, logs
    # Started and undone: the store was opened (its schema exists) and the member had joined.
    assert stores.has_table(store_file, "replica_members" if stores.postgres else "probe_results")
    assert _open_handles(store_file, postgres_port) == []
    assert set(threading.enumerate()) - threads_before == set()
    assert asyncio.all_tasks() - tasks_before == set()
    if stores.postgres:
        live = stores.query(store_file, "SELECT id FROM replica_members WHERE left_at IS NULL")
        assert live == [], live
        assert "replica_joined" in events and "replica_left" in events
    # Stopping afterwards (as the CLI does after any failed start) is harmless.
    await daemon.stop()
