"""Dossier API endpoints and the `tthc-monitor dossiers` CLI over a real store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from monitor.cli.dossiers import add_parser, run
from monitor.config import Config
from monitor.dossiers.model import Dossier, DossierStatus
from monitor.dossiers.service import DossierService
from monitor.dossiers.store import SyncWrite, TrackedDossier, Upsert
from monitor.events import EventBus
from monitor.store import SqliteStore
from monitor.web.dossiers import add_routes, encode_cursor
from monitor.web.services import SERVICES
from tests.dossier_helpers import Clock, at, closed_incident, dossier
from tests.store_engines import StoreFactory

NOW = at(12, 9)  # Thursday 09:00


class Host:
    """The slice of the daemon the dossier routes use: config, now() and the dossier service."""

    def __init__(self, config: Config, service: DossierService, clock: Clock) -> None:
        self.config = config
        self.dossiers = service
        self._clock = clock

    def now(self) -> datetime:
        return self._clock()


async def put(service: DossierService, dossiers: Sequence[Dossier], now: datetime) -> None:
    upserts = []
    for d in dossiers:
        timeliness = service.engine.classify(d)
        upserts.append(Upsert(d, d.status.value, 0, service.engine.timeline(d), timeliness))
    await service.dossier_store.write_sync(SyncWrite(now, upserts))
    for d in dossiers:
        if d.status in (DossierStatus.OPEN, DossierStatus.PAUSED):
            service.dossier_store.tracked[d.code] = TrackedDossier(d)
    await service.engine.update(dossiers, now)


def sample() -> list[Dossier]:
    """Dossiers in every state at NOW, across two units."""
    items = [dossier(f"A-{i:03d}", at(20, 17)) for i in range(7)]  # on_track
    items += [
        dossier("B-001", at(13, 17)),  # due_soon (Friday 17:00: 14 working hours left)
        dossier("B-002", at(12, 16)),  # due_today
        dossier("B-003", at(11, 17), unit_code="H12.02", unit_name="UBND xã Tân Hòa"),  # overdue
        dossier("B-004", at(13, 17), status=DossierStatus.PAUSED),
        dossier("F-001", at(10, 17), status=DossierStatus.FINISHED, released_at=at(9, 10)),  # early
        dossier("F-002", at(10, 17), status=DossierStatus.FINISHED, released_at=at(10, 14), via_postal=True),
    ]
    return items


@pytest.fixture
async def api(stores: StoreFactory, tmp_path: Path) -> AsyncIterator[tuple[TestClient, DossierService, int]]:
    """A real store with sample dossiers, the dossier routes on an aiohttp test server."""
    clock = Clock(NOW)
    config = Config.model_validate(
        {"targets": [{"type": "http", "name": "dvc", "url": "http://127.0.0.1:9/"}]}
    )
    store = stores.new(tmp_path / "s.db", clock=clock)
    await store.open()
    service = DossierService(config, store, EventBus(), clock, sources=[])
    await service.start(sync=False)
    incident = await closed_incident(store, "dvc", at(11, 9), at(11, 10))
    await put(service, sample(), NOW)
    app = web.Application()
    app[SERVICES] = Host(config, service, clock)  # type: ignore[assignment]
    add_routes(app)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, service, incident
    finally:
        await client.close()
        await service.stop(0.1)
        await store.close()


async def test_list_filters_by_state_and_unit(api: tuple[TestClient, DossierService, int]) -> None:
    """States are computed for now; unit and state filters combine; no state = open and paused ones."""
    client, _, _ = api
    body = await (await client.get("/api/v1/dossiers")).json()
    states = {item["code"]: item["state"] for item in body["dossiers"]}
    assert states["B-001"] == "due_soon" and states["B-002"] == "due_today"
    assert states["B-003"] == "overdue" and states["B-004"] == "paused" and states["A-000"] == "on_track"
    assert "F-001" not in states and body["next_cursor"] is None
    soon = await (await client.get("/api/v1/dossiers?state=due_soon")).json()
    assert [item["code"] for item in soon["dossiers"]] == ["B-001"]
    assert soon["dossiers"][0]["working_seconds_left"] == 14 * 3600
    unit = await (await client.get("/api/v1/dossiers?unit=H12.02")).json()
    assert [item["code"] for item in unit["dossiers"]] == ["B-003"]
    finished = await (await client.get("/api/v1/dossiers?state=finished")).json()
    assert {item["code"]: item["timeliness"] for item in finished["dossiers"]} == {
        "F-001": "early",
        "F-002": "on_time",
    }


async def test_keyset_pagination_walks_every_dossier_once(
    api: tuple[TestClient, DossierService, int],
) -> None:
    """Pages of 3 with the opaque cursor return every open dossier exactly once, in code order."""
    client, _, _ = api
    codes: list[str] = []
    url = "/api/v1/dossiers?limit=3"
    while True:
        body = await (await client.get(url)).json()
        codes += [item["code"] for item in body["dossiers"]]
        if body["next_cursor"] is None:
            break
        url = f"/api/v1/dossiers?limit=3&cursor={body['next_cursor']}"
    assert codes == sorted(codes) and len(codes) == len(set(codes)) == 11


async def test_bad_parameters_are_400_naming_the_parameter(
    api: tuple[TestClient, DossierService, int],
) -> None:
    """Each bad query parameter gets a 400 whose message starts with its name."""
    client, _, _ = api
    for query, name in (
        ("state=late", "state"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("limit=1001", "limit"),
        ("cursor=%%%", "cursor"),
        ("cursor=" + encode_cursor("x")[:-3] + "!!", "cursor"),
    ):
        response = await client.get(f"/api/v1/dossiers?{query}")
        assert response.status == 400, query
        assert (await response.json())["error"].startswith(f"{name}:"), query
    response = await client.get("/api/v1/overdue-during-outage?since=yesterday")
    assert response.status == 400 and (await response.json())["error"].startswith("since:")
    assert (await client.get("/api/v1/dossiers/NOPE")).status == 404


async def test_dossier_detail_units_and_outage_evidence(api: tuple[TestClient, DossierService, int]) -> None:
    """One dossier with its crossings; per-unit counts and ratios; overdue-during-outage with incident ids."""
    client, _, incident = api
    body = await (await client.get("/api/v1/dossiers/B-003")).json()
    assert body["state"] == "overdue" and body["overdue_outage"] is True
    assert [(c["threshold"], c["suppressed"]) for c in body["crossings"]] == [
        ("2d", True),
        ("4h", True),
        ("overdue", False),
    ]
    units = {u["code"]: u for u in (await (await client.get("/api/v1/units")).json())["units"]}
    assert units["H12.01"]["states"] == {"on_track": 7, "due_soon": 1, "due_today": 1, "paused": 1}
    assert units["H12.01"]["on_time_ratio"] == 1.0 and units["H12.01"]["via_postal_ratio"] == 0.5
    assert units["H12.02"]["states"] == {"overdue": 1}
    evidence = await (await client.get("/api/v1/overdue-during-outage?since=7d")).json()
    assert [(d["code"], d["outage_incident_ids"]) for d in evidence["dossiers"]] == [("B-003", [incident])]


def test_cli_lists_dossiers_from_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`tthc-monitor dossiers --state due_soon --store FILE` reads the file read-only (SQLite: a file)."""
    path = tmp_path / "s.db"

    async def seed() -> None:
        clock = Clock(NOW)
        store = SqliteStore(path, clock=clock)
        await store.open()
        service = DossierService(Config(), store, EventBus(), clock, sources=[])
        await service.start(sync=False)
        await put(service, sample(), NOW)
        await service.stop(0.1)
        await store.close()

    asyncio.run(seed())
    import argparse

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dossiers", "--state", "due_soon", "--store", str(path)])
    assert run(args, now=NOW) == 0
    out = capsys.readouterr().out
    assert "B-001" in out and "due_soon" in out and "2026-03-13 17:00" in out and "14h" in out
    assert "A-000" not in out and out.strip().endswith("1 dossier(s)")
    args = parser.parse_args(["dossiers", "--unit", "H12.02", "--store", str(path)])
    assert run(args, now=NOW + timedelta(hours=1)) == 0
    out = capsys.readouterr().out
    assert "B-003" in out and "overdue" in out and "-" in out
    args = parser.parse_args(["dossiers", "--store", str(tmp_path / "missing.db")])
    assert run(args) == 1
