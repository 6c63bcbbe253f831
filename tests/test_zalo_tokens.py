"""Zalo token rotation on the daemon's own store (both engines): a failed write of the rotated refresh
token, two processes (or replicas) refreshing at once, a refused refresh with a live access token in hand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from alerts.channels import ChannelDeps, OutgoingMessage, create_channel
from alerts.channels.store_lease import AdvisoryLock, StoreLease, exclusive
from monitor.store import SqliteStore, SqlStore
from monitor.store.engine import DB_ERRORS
from tests.alert_support import zns_config as alert_zns_config
from tests.fakes.zalo import FakeZalo
from tests.store_engines import StoreFactory

ROOT = Path(__file__).resolve().parent.parent
PHONE = "84912345678"
CODE = "000.00.12.H55-250101-0001"


class FirstWriteFails:
    """The daemon's store, except that its first key/value write fails like a full disk."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.failed = 0

    async def get_value(self, key: str) -> str | None:
        return await self.store.get_value(key)

    async def set_value(self, key: str, value: str) -> None:
        if not self.failed:
            self.failed += 1
            raise sqlite3.OperationalError("database or disk is full")
        await self.store.set_value(key, value)

    def transaction(self) -> AbstractAsyncContextManager[Any]:
        return self.store.transaction()


class Clock:
    """An injectable epoch clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def zns_config(zalo: FakeZalo, refresh_token: str, **overrides: Any) -> Any:
    """A `zns` channel with templates for overdue alerts and notify-test's test alert."""
    templates = {
        kind: {"template_id": "T100", "params": {"ma_ho_so": "alert_id"}} for kind in ("overdue", "test")
    }
    return alert_zns_config(zalo, refresh_token, "zns", templates=templates, **overrides)


def message(alert_id: str) -> OutgoingMessage:
    return OutgoingMessage(
        alert_id=alert_id, kind="overdue", person_id="can-bo-07", text=f"Ho so {CODE}", phone=PHONE
    )


def stored_refresh_token(stores: StoreFactory, path: Path, app_id: str) -> str:
    ((value,),) = stores.query(path, "SELECT value FROM kv WHERE key = ?", (f"zalo.oauth.{app_id}",))
    return str(json.loads(value)["refresh_token"])


@pytest.fixture
async def zalo() -> AsyncIterator[FakeZalo]:
    async with FakeZalo() as fake:
        yield fake


async def test_rotated_token_that_could_not_be_stored_is_used_and_stored_next_time(
    stores: StoreFactory, zalo: FakeZalo, tmp_path: Path
) -> None:
    """The first write of the rotated refresh token fails: the fresh access token still goes out, the next
    send stores the refresh token first, and Zalo sees a single rotation."""
    path = tmp_path / "monitor.db"
    async with stores.new(path) as store:
        kv = FirstWriteFails(store)
        deps = ChannelDeps(kv=kv)
        try:
            channel = create_channel(zns_config(zalo, zalo.issue_refresh_token()), deps)
            with capture_logs() as logs:
                await channel.send(message("a-1"))
            assert kv.failed == 1 and any(entry["event"] == "zalo_token_store_failed" for entry in logs)
            assert len(zalo.messages) == 1, "the fresh access token was used"
            await channel.send(message("a-2"))
        finally:
            await deps.aclose()
    assert zalo.refreshes == 1 and zalo.rejected_refreshes == 0
    assert zalo.messages[0]["access_token"] == zalo.messages[1]["access_token"]
    assert stored_refresh_token(stores, path, zalo.app_id) in zalo.valid_refresh_tokens


async def test_two_stores_on_one_file_refresh_once(
    stores: StoreFactory, zalo: FakeZalo, tmp_path: Path
) -> None:
    """Two token managers on two stores of one database (two daemons on a SQLite file, two replicas on
    a PostgreSQL schema) need a token at the same moment: one refresh reaches Zalo (a lease row on
    SQLite, the `zalo-refresh` advisory lock on PostgreSQL), both end with the new token, and the stored
    refresh token is the live one."""
    zalo.oauth_delay = 0.3
    config = zns_config(zalo, zalo.issue_refresh_token())
    path = tmp_path / "monitor.db"
    async with stores.new(path) as first_store, stores.new(path) as second_store:
        first, second = ChannelDeps(kv=first_store), ChannelDeps(kv=second_store)
        try:
            channels = [create_channel(config, first), create_channel(config, second)]
            await asyncio.gather(*(channel.send(message(f"a-{n}")) for n, channel in enumerate(channels)))
            managers = [deps.token_managers[zalo.app_id] for deps in (first, second)]
            assert zalo.refreshes == 1
            assert managers[0]._access_token == managers[1]._access_token is not None
            lock = managers[0]._lease
            assert isinstance(lock, AdvisoryLock if stores.postgres else StoreLease)
            # Later, Zalo expires the token: the one refresh again serves both.
            zalo.expire_access_tokens()
            await asyncio.gather(*(channel.send(message(f"b-{n}")) for n, channel in enumerate(channels)))
        finally:
            await first.aclose()
            await second.aclose()
    assert zalo.rejected_refreshes == 0 and zalo.refreshes == 2
    assert len(zalo.messages) == 4
    assert stored_refresh_token(stores, path, zalo.app_id) in zalo.valid_refresh_tokens


async def test_notify_test_process_and_the_daemon_share_one_refresh(zalo: FakeZalo, tmp_path: Path) -> None:
    """`tthc-monitor notify-test` in its own process while the daemon's manager refreshes: one refresh at
    Zalo, the notify-test alert goes out, and the daemon can still refresh afterwards (SQLite only:
    notify-test opens the store file)."""
    zalo.oauth_delay = 1.0
    refresh_token = zalo.issue_refresh_token()
    path = tmp_path / "monitor.db"
    channel_config = zns_config(zalo, refresh_token)
    config = {
        "timezone": "Asia/Ho_Chi_Minh",
        "store": {"path": str(path)},
        "targets": [],
        "alerts": {
            "channels": [
                channel_config.model_dump(mode="json")
                | {"refresh_token": refresh_token, "secret_key": zalo.secret_key}
            ],
            "directory": {"people": [{"id": "can-bo-07", "phone": "0912 345 678", "channels": ["zns"]}]},
        },
    }
    config_path = tmp_path / "monitor.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    async with SqliteStore(path) as store:
        deps = ChannelDeps(kv=store)
        try:
            daemon = create_channel(channel_config, deps)
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "monitor", "notify-test", "--person", "can-bo-07",
                "--config", str(config_path),
                cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            await asyncio.sleep(0.5)
            await daemon.send(message("daemon-1"))
            out, err = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, (out + err).decode()[-2000:]
            assert b"sent test alert" in out
            zalo.expire_access_tokens()
            await daemon.send(message("daemon-2"))
            manager = deps.token_managers[zalo.app_id]
            assert not manager.reauthorization_required
        finally:
            await deps.aclose()
    assert zalo.rejected_refreshes == 0 and zalo.refreshes == 2
    assert len(zalo.messages) == 3
    ((value,),) = _sqlite_rows(path, f"zalo.oauth.{zalo.app_id}")
    assert json.loads(value)["refresh_token"] in zalo.valid_refresh_tokens


def _sqlite_rows(path: Path, key: str) -> list[tuple[str]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchall()


async def test_refused_refresh_keeps_the_live_access_token(
    stores: StoreFactory, zalo: FakeZalo, tmp_path: Path
) -> None:
    """Within the refresh margin Zalo refuses the refresh token: sends go on with the access token until it
    expires, and the channel reports that it needs re-authorising."""
    async with stores.new(tmp_path / "monitor.db") as store:
        clock = Clock(zalo.clock())
        deps = ChannelDeps(kv=store, clock=clock)
        try:
            channel = create_channel(zns_config(zalo, zalo.issue_refresh_token(), refresh_margin="5m"), deps)
            await channel.send(message("a-1"))
            zalo.valid_refresh_tokens.clear()  # e.g. the app was re-authorised elsewhere
            clock.now += zalo.access_token_ttl - 120  # two minutes left: inside the margin
            with capture_logs() as logs:
                await channel.send(message("a-2"))
            manager = deps.token_managers[zalo.app_id]
            assert manager.reauthorization_required and not channel.healthy  # type: ignore[attr-defined]
            assert any(entry["event"] == "zalo_reauthorization_required" for entry in logs)
            await channel.send(message("a-3"))
        finally:
            await deps.aclose()
    assert zalo.rejected_refreshes == 1, "refused once, not asked again"
    assert len(zalo.messages) == 3 and len({sent["access_token"] for sent in zalo.messages}) == 1


async def test_a_dead_refresher_leaves_the_refresh_lock_free(stores: StoreFactory, tmp_path: Path) -> None:
    """A process that dies holding the refresh lock blocks the others no longer than its lease's ttl on
    SQLite, and not at all on PostgreSQL, where the server drops its advisory lock with its session."""
    path = tmp_path / "monitor.db"
    async with stores.new(path) as first_store, stores.new(path) as second_store:
        held = exclusive(first_store, "zalo.refresh.app", lock="zalo-refresh", ttl=0.5, wait=0)
        waiting = exclusive(second_store, "zalo.refresh.app", lock="zalo-refresh", ttl=0.5, wait=5)
        assert held is not None and waiting is not None
        assert await held.try_take()
        assert not await waiting.try_take(), "one holder at a time"
        started = asyncio.get_running_loop().time()
        if stores.postgres:
            # The holder's replica dies: its session goes, and the server lets go of what it held.
            ended = await asyncio.to_thread(
                stores.query,
                path,
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND ((classid::bigint << 32) | objid::bigint)"
                " = hashtextextended(current_schema() || ':zalo-refresh', 0)",
            )
            assert ended == [(True,)]
        async with waiting:
            taken_after = asyncio.get_running_loop().time() - started
        # Without a release the SQLite lease lapses after its ttl; the PostgreSQL lock is free at once.
        assert taken_after < (0.4 if stores.postgres else 1.5)
        if not stores.postgres:
            assert taken_after >= 0.3
        # What the dead holder left in this process: its connection, closed (its unlock fails on PostgreSQL).
        with contextlib.suppress(*DB_ERRORS):
            await held.release()
