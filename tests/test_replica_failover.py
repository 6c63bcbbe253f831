"""Three replicas as real processes on one PostgreSQL, probing loopback portals, syncing four simulated
dossier systems and sending their deadline alerts through a slow fake eSMS and a slower fake Zalo ZNS
(a third of the people receive by ZNS): `kill -9` of the member that owns a down target and the most
sources, while its delivery worker holds claims on both channels in the middle of the storm. Within 30 s
the two others own every target and source (each source synced again by exactly one), the incident
continues with the same id, every expected alert reaches its person's gateway and none is accepted twice
(the dead member's claims come back after the claim lease and their repeats are dropped by eSMS
RequestId and ZNS tracking_id), and /metrics summed over the members equals what one replica alone
reports for the same world. Zalo access tokens live a few seconds, so the members refresh them during
the storm, one at a time under the advisory lock: no single-use refresh token is spent twice.

"One replica alone" is a real daemon started on the same store once the survivors are stopped, against
the same simulators and portals (not figures recomputed here from SQL, which would copy the code under
test): the simulated systems run on a frozen clock, so the world it syncs is the one the members synced
and the comparison is exact, not a race with simulated time.

PostgreSQL only: replicas share work only there.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from alerts.model import AlertKind
from alerts.outbox import alert_id_for
from alerts.templates import TEMPLATE_PARAMS
from monitor.simulator import Simulator
from monitor.simulator.catalog import UNITS
from tests.crash_helpers import DaemonProcess, SlowEsms, simulator_source, sms_alerts
from tests.fakes.zalo import FakeZalo
from tests.store_engines import StoreFactory
from tests.test_replica_daemons import Portals

MEMBERS = 3
# Enough that every member owns targets (a member with none: 3 * (2/3)^24, 2e-4).
TARGETS = 24
SOURCES = 4
DOSSIERS = 250
LEASE = 2.0
CLAIM_LEASE = 3.0
CONCURRENCY = 4
# Each send held this long at the gateway: the storm lasts several seconds with three senders.
SEND_DELAY = 0.1
# ZNS sends are fewer (a third of the people) but slower, two at a time per member: the ZNS storm outlasts
# the SMS one, so the kill lands while both channels' sends are in flight (and ZNS drains last).
ZALO_SEND_DELAY = 0.3
ZALO_CONCURRENCY = 2
# Zalo access tokens live this long (seconds) and are refreshed 1 s before expiry: several refreshes, by
# whichever member sends first, during the storm and after the kill.
ZALO_TOKEN_TTL = 4
FAILOVER_LIMIT = 30.0
# oncall-2 receives by ZNS, like the officers of the five provincial departments (Sở: about a third of
# the simulators' open dossiers); everyone else by SMS.
ONCALL = ("oncall-1", "oncall-2")
ZALO_UNITS = frozenset(unit.code for unit in UNITS if unit.name.startswith("Sở "))
ZALO_KINDS = (AlertKind.DUE_SOON, AlertKind.LAST_WARNING, AlertKind.OVERDUE, AlertKind.TARGET_DOWN)


# Members holding the advisory lock Zalo token refreshes take (alerts/channels/store_lease.py): a bigint
# key shows in pg_locks as its high (classid) and low (objid) 32 bits.
REFRESH_LOCK_HOLDERS = (
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND"
    " ((classid::bigint << 32) | objid::bigint) = hashtextextended(current_schema() || ':zalo-refresh', 0)"
)


def _zns_channel(zalo: FakeZalo) -> dict[str, Any]:
    """The `zns` channel: one template per alert kind sent, each parameter filled by the field of its name
    (the fake Zalo checks every one is there)."""
    zalo.templates = {f"T-{kind}": set(TEMPLATE_PARAMS[kind]) for kind in ZALO_KINDS}
    return {
        "name": "zns",
        "type": "zalo_zns",
        **zalo.channel_settings(),
        "concurrency": ZALO_CONCURRENCY,
        "timeout": "60s",
        "refresh_margin": "1s",
        "templates": {
            str(kind): {"template_id": f"T-{kind}", "params": {name: name for name in TEMPLATE_PARAMS[kind]}}
            for kind in ZALO_KINDS
        },
    }


def _config(
    tmp_path: Path,
    stores: StoreFactory,
    portals: Portals,
    sims: list[Simulator],
    esms: SlowEsms,
    zalo: FakeZalo,
) -> Path:
    targets = [
        {
            "name": f"t{index}",
            "type": "http",
            "url": f"http://127.0.0.1:{portals.port}/t{index}",
            "interval": "0.5s",
            "timeout": "0.5s",
            # Two failures in a row: one probe timing out on a busy machine is no outage.
            "failure_threshold": 2,
            "success_threshold": 1,
        }
        for index in range(TARGETS)
    ]
    # Sends wait at the stalled gateway until the members have settled: longer than that, never cut off.
    alerts = sms_alerts(esms, concurrency=CONCURRENCY, timeout="60s")
    alerts["channels"].append(_zns_channel(zalo))
    for officer in alerts["directory"]["people"]:
        if officer["units"][0] in ZALO_UNITS:
            officer["channels"] = ["zns"]
    alerts["directory"]["people"] += [
        {
            "id": person,
            "name": person,
            "phone": f"09130000{i:02d}",
            "roles": ["it_oncall"],
            "channels": ["zns" if person == ONCALL[1] else "sms"],
        }
        for i, person in enumerate(ONCALL)
    ]
    # No channels on the rules: each person's own channel carries their alerts.
    for rule in alerts["rules"]:
        rule.pop("channels", None)
    alerts["rules"].append(
        {
            "name": "outages",
            "on": ["target_down"],
            "to": ["it_oncall"],
            "quiet_hours": False,
            "group_wait": "0s",
        }
    )
    alerts["delivery"] = {"poll_interval": "0.5s", "claim_lease": f"{CLAIM_LEASE}s"}
    config = {
        "timezone": "Asia/Ho_Chi_Minh",
        "logging": {"level": "info", "format": "json"},
        "listen": "127.0.0.1:0",
        "store": {**stores.config(tmp_path / "shared.db"), "flush_interval": "0.2s"},
        "replicas": {"lease": f"{LEASE}s"},
        "scheduler": {"start_jitter": 0, "shutdown_grace": "1s"},
        "targets": targets,
        "dossiers": {
            "sources": [simulator_source(sim, f"s{index}") for index, sim in enumerate(sims)],
            "thresholds": ["2d", "4h"],
            # The shared tables' figures within a second of a sync, not the default minute.
            "aggregate_interval": "1s",
        },
        "alerts": alerts,
    }
    path = tmp_path / "replica.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, url
        return await response.text()


def _samples(text: str, name: str) -> list[tuple[str, float]]:
    """(labels, value) of every sample of one metric in exposition text."""
    found = []
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match:
            found.append((match.group(1) or "", float(match.group(2))))
    return found


def _total(text: str, name: str) -> float:
    return sum(value for _labels, value in _samples(text, name))


def _summed(texts: list[str], name: str) -> dict[str, float]:
    """Each labelled series of `name`, summed over the members that export it."""
    sums: Counter[str] = Counter()
    for text in texts:
        for labels, value in _samples(text, name):
            sums[labels] += value
    return dict(sums)


async def _scrape(members: list[DaemonProcess]) -> list[str]:
    return [await _get(member.base_url + "/metrics") for member in members]


async def _incidents(member: DaemonProcess, target: str) -> list[dict[str, Any]]:
    body = await _get(f"{member.base_url}/api/v1/incidents?since=1h&target={target}")
    return list(yaml.safe_load(body)["incidents"])


def _synced(text: str, source: str) -> float | None:
    """When this member last synced `source` (None: it does not sync it)."""
    name = "tthc_dossier_sync_last_success_timestamp_seconds"
    found = [value for labels, value in _samples(text, name) if labels == f'{{source="{source}"}}']
    return found[0] if found else None


async def _settled(group: list[DaemonProcess]) -> list[str] | None:
    """The members' metrics once they agree on the membership and share everything out (else None)."""
    scraped = await _scrape(group)
    live = all(_total(text, "tthc_replica_members") == len(group) for text in scraped)
    owned = sum(_total(text, "tthc_replica_owned_targets") for text in scraped)
    sources = sum(_total(text, "tthc_replica_owned_sources") for text in scraped)
    leaders = sum(_total(text, "tthc_replica_leader") for text in scraped)
    ok = live and owned == TARGETS and sources == SOURCES and leaders == 1
    return scraped if ok else None


async def _until_settled(group: list[DaemonProcess], within: float, what: str) -> list[str]:
    deadline = time.monotonic() + within
    while (scraped := await _settled(group)) is None:
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)
    return scraped


def _expected_alerts(stores: StoreFactory, tmp_path: Path, incident_id: int) -> set[str]:
    """The dedupe keys the world calls for, from the store's records rather than the outbox: one per
    published crossing and officer assigned to its dossier, one per person on call for the incident."""
    crossings = stores.query(
        tmp_path / "shared.db",
        "SELECT c.id, d.assignee_id FROM dossier_crossings AS c JOIN dossiers AS d ON d.code = c.code"
        " WHERE c.suppressed = 0",
    )
    assert crossings, "the simulators' dossiers cross thresholds"
    return {f"crossing:{crossing}:officer-{assignee}" for crossing, assignee in crossings} | {
        f"incident:{incident_id}:down:{person}" for person in ONCALL
    }


def _outbox_keys(stores: StoreFactory, tmp_path: Path) -> set[str]:
    return {key for (key,) in stores.query(tmp_path / "shared.db", "SELECT dedupe_key FROM alert_outbox")}


def _zalo_people(config: Path) -> set[str]:
    """Who receives by ZNS, as the config file the members read says."""
    people = yaml.safe_load(config.read_text(encoding="utf-8"))["alerts"]["directory"]["people"]
    return {person["id"] for person in people if person["channels"] == ["zns"]}


def _by_zalo(keys: set[str], zalo_people: set[str]) -> tuple[set[str], set[str]]:
    """`keys` split into (SMS, ZNS) by their person (each dedupe key ends with the person's id)."""
    zalo = {key for key in keys if key.rsplit(":", 1)[1] in zalo_people}
    return keys - zalo, zalo


def _statuses(stores: StoreFactory, tmp_path: Path) -> dict[str, int]:
    return dict(
        stores.query(tmp_path / "shared.db", "SELECT status, count(*) FROM alert_outbox GROUP BY status")
    )


def _claims_of(stores: StoreFactory, tmp_path: Path, member: DaemonProcess) -> list[tuple[str, str]]:
    """(dedupe key, channel) of the alerts `member` holds in flight (claims name host:pid:nonce)."""
    assert member.process is not None
    rows = stores.query(
        tmp_path / "shared.db",
        "SELECT dedupe_key, channel FROM alert_outbox WHERE status = 'in_flight' AND claimed_by LIKE ?",
        (f"%:{member.process.pid}:%",),
    )
    return [(key, channel) for key, channel in rows]


# Series compared between the survivors (summed) and one replica alone: targets, sources and their
# dossiers from their owners, the shared tables' figures (dossiers, outbox) from the leader.
COMPARED = (
    "tthc_replica_owned_targets",
    "tthc_replica_owned_sources",
    "tthc_dossiers_open",
    "tthc_dossiers_finished_total",
    "tthc_dossier_on_time_ratio",
    "tthc_dossiers_via_postal_ratio",
    "tthc_outbox_pending",
    "probe_success",
)


async def test_kill_9_mid_storm_of_the_owner_of_a_down_target_and_most_sources(
    postgres_stores: StoreFactory, tmp_path: Path
) -> None:
    """Three members, 24 targets, four sources, hundreds of alerts; kill -9 of the member owning a down
    target and the most sources while it holds claims: takeover within 30 s, each source synced by one
    survivor, incident continued, every alert accepted once by its gateway (eSMS or ZNS), Zalo tokens
    refreshed one at a time, sums equal one replica's."""
    portals = Portals()
    await portals.start()
    members = [DaemonProcess(Path(), tmp_path / f"member-{index}.log") for index in range(MEMBERS)]
    # The simulated systems stand still (a frozen clock), so the lone replica at the end sees the world
    # the members saw; deadlines still move with real time in the daemons.
    frozen = datetime.now(UTC)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(portals.stop)
        esms = await stack.enter_async_context(SlowEsms(delay=SEND_DELAY))
        zalo = await stack.enter_async_context(FakeZalo(access_token_ttl=ZALO_TOKEN_TTL))
        zalo.delay = ZALO_SEND_DELAY
        # Nothing goes out until the members have settled: the storm then starts all at once.
        esms.stalled = zalo.stalled = True
        sims = [
            await stack.enter_async_context(
                Simulator(
                    seed=7 + index,
                    dossier_count=DOSSIERS,
                    tls=False,
                    state_dir=tmp_path / f"sim-{index}",
                    clock=lambda: frozen,
                    code_prefix=f"S{index}-",
                )
            )
            for index in range(SOURCES)
        ]
        config = _config(tmp_path, postgres_stores, portals, sims, esms, zalo)
        zalo_people = _zalo_people(config)
        # How many hold the refresh lock as each refresh reaches Zalo (one, the member refreshing).
        lock_holders: list[int] = []

        async def count_lock_holders() -> None:
            rows = await asyncio.to_thread(
                postgres_stores.query, tmp_path / "shared.db", REFRESH_LOCK_HOLDERS
            )
            lock_holders.append(rows[0][0])

        zalo.on_refresh = count_lock_holders
        for member in members:
            member.config = config
            stack.push_async_callback(member.kill)
        await asyncio.gather(*(member.start(start_timeout=60) for member in members))
        scraped = await _until_settled(members, 60, "the three members never settled")

        # Who owns what, by the series each member exports: a target's probe series and a source's sync
        # series come from their owner only, once it has probed or synced it (a target taken over just
        # before the members settled has no series until its first probe there).
        sources: dict[int, list[str]] = {i: [] for i in range(MEMBERS)}
        deadline = time.monotonic() + 30
        while True:
            holders = {
                f"t{index}": [
                    i for i, text in enumerate(scraped) if f'probe_success{{target="t{index}"}}' in text
                ]
                for index in range(TARGETS)
            }
            for i in sources:
                sources[i] = [f"s{n}" for n in range(SOURCES) if _synced(scraped[i], f"s{n}") is not None]
            counted = Counter(source for names in sources.values() for source in names)
            probed = all(len(found) == 1 for found in holders.values())
            if (
                probed
                and sorted(counted) == [f"s{n}" for n in range(SOURCES)]
                and set(counted.values()) == {1}
            ):
                break
            assert time.monotonic() < deadline, (holders, sources)
            await asyncio.sleep(0.2)
            scraped = await _scrape(members)
        owners = {name: found[0] for name, found in holders.items()}
        # The victim: the most sources among the members owning a target (four sources on three: >= 2).
        syncing = max((i for i in range(MEMBERS) if i in owners.values()), key=lambda i: len(sources[i]))
        assert len(sources[syncing]) >= SOURCES // 2, sources
        victim_target = next(name for name, holder in sorted(owners.items()) if holder == syncing)
        owner = members[syncing]

        # The storm begins; the victim's target goes down and its owner opens the incident.
        for gateway in (esms, zalo):
            gateway.stalled = False
            gateway.release.set()
        portals.down.add(victim_target)
        deadline = time.monotonic() + 20
        while not (opened := await _incidents(owner, victim_target)) or opened[0]["ended_at"] is not None:
            assert time.monotonic() < deadline, "the incident never opened"
            await asyncio.sleep(0.1)
        incident_id = opened[0]["id"]
        deadline = time.monotonic() + 20
        while {channel for _key, channel in _claims_of(postgres_stores, tmp_path, owner)} != {"sms", "zns"}:
            assert time.monotonic() < deadline, "the victim never held claims on both channels"
            await asyncio.sleep(0.02)

        # The owner dies at once: no leave, no flush, its claims' sends cut off at the gateway.
        killed, killed_at = time.monotonic(), time.time()
        await owner.kill()
        at_kill = _claims_of(postgres_stores, tmp_path, owner)
        statuses_at_kill = _statuses(postgres_stores, tmp_path)
        held = Counter(channel for _key, channel in at_kill)
        assert set(held) == {"sms", "zns"}, f"killed while holding claims on both channels: {held}"
        assert held["sms"] <= CONCURRENCY and held["zns"] <= ZALO_CONCURRENCY, (
            f"claims never exceed each channel's concurrency: {held}"
        )
        assert statuses_at_kill.get("pending", 0) > 0, (
            f"killed in the middle of the storm: {statuses_at_kill}"
        )
        survivors = [member for member in members if member is not owner]
        after = await _until_settled(survivors, FAILOVER_LIMIT, "no failover within 30 s")
        failover = time.monotonic() - killed

        # The incident continues on its new owner: same id, open, no second one after it (a probe
        # timing out while three daemons start on a busy machine may have left an earlier one).
        deadline = time.monotonic() + FAILOVER_LIMIT
        while True:
            incidents = await _incidents(survivors[0], victim_target)
            since_down = [(i["id"], i["ended_at"]) for i in incidents if i["id"] >= incident_id]
            if since_down == [(incident_id, None)]:
                break
            assert time.monotonic() < deadline, incidents
            await asyncio.sleep(0.2)
        after = await _scrape(survivors)
        holders = [i for i, text in enumerate(after) if f'probe_success{{target="{victim_target}"}}' in text]
        assert len(holders) == 1

        # Every source is synced by exactly one survivor; the dead member's ones again since the kill.
        deadline = killed + FAILOVER_LIMIT
        while True:
            synced = {f"s{n}": [_synced(text, f"s{n}") for text in after] for n in range(SOURCES)}
            syncers = {name: [at for at in times if at is not None] for name, times in synced.items()}
            again = all(syncers[name] and syncers[name][0] >= killed_at for name in sources[syncing])
            if all(len(times) == 1 for times in syncers.values()) and again:
                break
            assert time.monotonic() < deadline, f"sources not synced again within 30 s: {syncers}"
            await asyncio.sleep(0.2)
            after = await _scrape(survivors)
        resynced = time.monotonic() - killed

        # Every expected alert reaches the gateway; the dead member's claims come back after the claim
        # lease, and the dead member's outage messages not yet stored are sent by the leader: all within
        # 30 s of the kill. Expected: from the crossings and incidents recorded (not from the outbox).
        deadline = killed + FAILOVER_LIMIT
        while True:
            expected = _expected_alerts(postgres_stores, tmp_path, incident_id)
            keys = _outbox_keys(postgres_stores, tmp_path)
            sms_keys, zalo_keys = _by_zalo(keys, zalo_people)
            accepted = {message["request_id"] for message in esms.messages}
            tracked = {message["tracking_id"] for message in zalo.messages}
            statuses = _statuses(postgres_stores, tmp_path)
            if (
                expected <= keys
                and accepted == {alert_id_for(key) for key in sms_keys}
                and tracked == {alert_id_for(key) for key in zalo_keys}
                and set(statuses) == {"sent"}
            ):
                break
            assert time.monotonic() < deadline, (
                len(expected - keys),
                len(keys),
                len(accepted),
                len(tracked),
                statuses,
            )
            await asyncio.sleep(0.2)
        delivered = time.monotonic() - killed
        attempts = postgres_stores.query(
            tmp_path / "shared.db",
            "SELECT attempts, coalesce(last_error, ''), count(*), max(sent_at) - min(created_at)"
            " FROM alert_outbox GROUP BY 1, 2 ORDER BY 1, 2",
        )
        # Nothing else: an earlier flap of a target (a probe timing out while three daemons start on a
        # busy machine) may have told the people on call too.
        recorded = {
            id_ for (id_,) in postgres_stores.query(tmp_path / "shared.db", "SELECT id FROM incidents")
        }
        others = keys - expected
        assert all(key.startswith("incident:") for key in others), others
        assert {int(key.split(":")[1]) for key in others} <= recorded, others
        assert len(expected) >= 300, f"a storm: {len(expected)} alerts"
        expected_sms, expected_zalo = _by_zalo(expected, zalo_people)
        assert len(expected_zalo) >= 50 and len(expected_sms) >= 150, (len(expected_sms), len(expected_zalo))
        # Each alert went out on its person's channel, none fell back to the other.
        used = dict(
            postgres_stores.query(tmp_path / "shared.db", "SELECT dedupe_key, channel_used FROM alert_outbox")
        )
        assert {used[key] for key in sms_keys} == {"sms"} and {used[key] for key in zalo_keys} == {"zns"}
        # None accepted twice: each RequestId and each tracking_id once, and no recipient got the same
        # message twice.
        assert len(esms.messages) == len(sms_keys)
        assert max(Counter((m["phone"], m["content"]) for m in esms.messages).values()) == 1
        assert len(zalo.messages) == len(zalo_keys)
        sent_zns = Counter(
            (m["phone"], m["template_id"], tuple(sorted(m["template_data"].items()))) for m in zalo.messages
        )
        assert max(sent_zns.values()) == 1
        # The gateways saw repeats only of the dead member's claims (sent once before the kill and once
        # after their lease), and dropped them by RequestId and tracking_id.
        assert esms.duplicates <= held["sms"], (esms.duplicates, at_kill)
        assert zalo.duplicates <= held["zns"], (zalo.duplicates, at_kill)
        # Access tokens expired during the run and were refreshed, one member at a time under the advisory
        # lock, the others adopting the stored token: no single-use refresh token was presented twice.
        assert zalo.refreshes >= 2, zalo.refreshes
        assert zalo.rejected_refreshes == 0, zalo.rejected_refreshes
        assert lock_holders == [1] * zalo.refreshes, lock_holders
        events = Counter(event.get("event") for member in members for event in member.log_events())
        assert events["zalo_token_adopted"] >= 1, events
        logs = "".join(member.log() for member in members)
        tokens = [*zalo.access_tokens, *zalo.valid_refresh_tokens]
        assert not [token for token in tokens if token in logs], "Zalo tokens stay out of the logs"
        taken_over = sum(
            event.get("count", 0)
            for member in survivors
            for event in member.log_events()
            if event.get("event") == "alerts_taken_over"
        )
        assert taken_over >= len(at_kill), "the dead member's claims came back after their lease"

        # /metrics summed over the survivors equals one replica alone on the same store and world. The
        # leader re-reads the outbox gauges and the dossier figures every second: wait for the backlog it
        # reports to be gone and the figures to be there.
        leader_only = ("tthc_dossiers_finished_total", "tthc_dossier_on_time_ratio", "tthc_outbox_pending")
        deadline = time.monotonic() + 15
        while True:
            shared = await _scrape(survivors)
            leader = next(text for text in shared if _total(text, "tthc_replica_leader") == 1)
            backlog = _summed(shared, "tthc_outbox_pending")
            if backlog == {'{channel="sms"}': 0.0, '{channel="zns"}': 0.0} and all(
                _samples(leader, name) for name in leader_only
            ):
                break
            assert time.monotonic() < deadline, backlog
            await asyncio.sleep(0.2)
        for name in leader_only:
            assert all(not _samples(text, name) for text in shared if text is not leader), name
        summed = {name: _summed(shared, name) for name in COMPARED}
        scraped_at = time.time()
        for member in survivors:
            await member.kill()
        alone = DaemonProcess(config, tmp_path / "alone.log")
        stack.push_async_callback(alone.kill)
        await alone.start(start_timeout=60)
        deadline = time.monotonic() + 30
        while True:
            lone = (await _scrape([alone]))[0]
            # One member, every source synced, the shared tables' figures computed.
            ready = _total(lone, "tthc_replica_members") == 1 and all(
                _synced(lone, f"s{n}") is not None for n in range(SOURCES)
            )
            probed = len(_samples(lone, "probe_success")) == TARGETS
            if ready and probed and _samples(lone, "tthc_dossier_on_time_ratio"):
                break
            assert time.monotonic() < deadline, "the lone replica never caught up"
            await asyncio.sleep(0.2)
        alone_figures = {name: _summed([lone], name) for name in COMPARED}
        # Due times and their thresholds fall on quarter hours: if one passed between the two scrapes, a
        # dossier may have moved between deadline states (real time), so only the totals must agree then.
        if int(scraped_at // 900) != int(time.time() // 900):
            for figures in (alone_figures, summed):
                figures["tthc_dossiers_open"] = {"": sum(figures["tthc_dossiers_open"].values())}
        assert alone_figures == summed
        open_rows = postgres_stores.query(
            tmp_path / "shared.db", "SELECT count(*) FROM dossiers WHERE status IN ('open', 'paused')"
        )
        assert sum(summed["tthc_dossiers_open"].values()) == open_rows[0][0]
        print(
            f"failover {failover:.2f} s, sources synced again {resynced:.2f} s, all {len(keys)} alerts"
            f" delivered {delivered:.2f} s after the kill (lease {LEASE} s, claim lease {CLAIM_LEASE} s;"
            f" {len(sms_keys)} by SMS, {len(zalo_keys)} by ZNS; claims held at the kill {dict(held)},"
            f" repeats dropped by RequestId {esms.duplicates}, by tracking_id {zalo.duplicates};"
            f" {zalo.refreshes} Zalo token refreshes, {events['zalo_token_adopted']} adoptions);"
            f" attempts, last error, alerts, ms from first created to last sent: {attempts}"
        )
