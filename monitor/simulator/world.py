"""The simulated province: its dossiers generated from a seed, and the clock that moves them.

Everything is driven by one seeded RNG consumed in a fixed order, and time moves in fixed ticks of
`TICK_SECONDS` aligned on the epoch: `simulate_until(t)` processes every tick that has ended by `t`
(arrivals drawn per tick, queued events applied by `monitor.simulator.lifecycle`). So the state at a
given time depends only on the seed, the generation time and the dossier count, not on how often (or in
which steps) time was advanced. The dossier record and its wire shapes live in
`monitor.simulator.dossier` (re-exported here).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.simulator.catalog import (
    FAMILY_NAMES,
    GIVEN_NAMES,
    MIDDLE_NAMES,
    PROCEDURES,
    UNITS,
    Procedure,
    Unit,
)
from monitor.simulator.dossier import (
    CSV_HEADERS,
    FINISHED_STATUSES,
    STEP_APPROVE,
    STEP_RECEIVE,
    STEP_RETURN,
    Applicant,
    Extension,
    SimDossier,
    Supplement,
    csv_export,
    format_local,
    format_national,
    parse_local,
)
from monitor.simulator.lifecycle import DONE, REPORT_FIELDS, Lifecycle
from monitor.simulator.worktime import DAY_SECONDS, HOUR_SECONDS, VN, from_line, round_up_quarter, to_line

__all__ = [
    "CSV_HEADERS",
    "FINISHED_STATUSES",
    "TICK_SECONDS",
    "Applicant",
    "Extension",
    "SimDossier",
    "SimulationReport",
    "Supplement",
    "World",
    "format_local",
    "format_national",
    "parse_local",
]

TICK_SECONDS = 300
_UNITS_BY_CODE = {unit.code: unit for unit in UNITS}


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """What one `simulate_until` call changed."""

    arrived: int = 0
    received: int = 0
    paused: int = 0
    resumed: int = 0
    extended: int = 0
    released: int = 0
    done: int = 0
    denied: int = 0

    @property
    def changes(self) -> int:
        return sum(getattr(self, name) for name in self.__slots__)


class World:
    """The dossiers of one simulated province and the queue of what will happen to them."""

    def __init__(self, seed: int, now: datetime, dossier_count: int = 300, code_prefix: str = "") -> None:
        if dossier_count < 0:
            raise ValueError("dossier_count must not be negative")
        self.seed = seed
        # Put before every dossierNo, so several simulators can stand for distinct systems.
        self.code_prefix = code_prefix
        self.dossier_count = dossier_count
        self.generated_at = now.astimezone(VN)
        self.dossiers: list[SimDossier] = []
        self.version = 0
        self._by_key: dict[str, SimDossier] = {}
        self._daily_seq: dict[tuple[str, str], int] = {}
        self._rng = random.Random(seed)
        self._lifecycle = Lifecycle(self._rng)
        self._selection_cache: OrderedDict[tuple[object, ...], list[SimDossier]] = OrderedDict()
        weights = [procedure.weight for procedure in PROCEDURES]
        self._cum_weights = list(_accumulate(weights))
        # A dossier stays open about three quarters of its duration (most finish early) plus a little
        # for late ones; in steady state the open ones are weighted by that lifetime.
        lifetimes = [0.75 * p.working_seconds + 0.2 * DAY_SECONDS for p in PROCEDURES]
        open_weights = (w * life for w, life in zip(weights, lifetimes, strict=True))
        self._open_cum_weights = list(_accumulate(open_weights))
        mean_lifetime = self._open_cum_weights[-1] / sum(weights)
        # Arrivals per working second that keep about `dossier_count` dossiers open.
        self._arrival_rate = dossier_count / mean_lifetime
        # The tick containing `now` is skipped: generation already stands for it.
        self._next_tick = int(self.generated_at.timestamp()) // TICK_SECONDS + 1
        self._generate(dossier_count)

    # --- lookup and selection ----------------------------------------------------------------------

    def get(self, key: str) -> SimDossier | None:
        """A dossier by dossierId or dossierNo."""
        return self._by_key.get(key)

    def select(
        self,
        *,
        statuses: frozenset[str] = frozenset(),
        agencies: frozenset[str] = frozenset(),
        dossier_no: str = "",
        modified_from: datetime | None = None,
        modified_to: datetime | None = None,
        top: str = "",
        now: datetime | None = None,
    ) -> list[SimDossier]:
        """Dossiers matching every given filter, in createDate order.

        Results are cached per filter set and data version, so paging through one selection costs a
        single scan, and each page is then a slice.
        """
        if not (statuses or agencies or dossier_no or modified_from or modified_to or top):
            return self.dossiers
        now_key = to_line(now) // 60 if top and now is not None else None
        key = (self.version, statuses, agencies, dossier_no, modified_from, modified_to, top, now_key)
        cached = self._selection_cache.get(key)
        if cached is not None:
            self._selection_cache.move_to_end(key)
            return cached
        if dossier_no:
            found = self._by_key.get(dossier_no)
            candidates: Iterable[SimDossier] = [found] if found and found.dossier_no == dossier_no else []
        else:
            candidates = self.dossiers
        result = [
            dossier
            for dossier in candidates
            if (not statuses or dossier.status in statuses)
            and (not agencies or dossier.unit.code in agencies)
            and (modified_from is None or dossier.modified_at >= modified_from)
            and (modified_to is None or dossier.modified_at <= modified_to)
            and (not top or _in_view(dossier, top, now or self.generated_at))
        ]
        self._selection_cache[key] = result
        if len(self._selection_cache) > 32:
            self._selection_cache.popitem(last=False)
        return result

    def counts_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for dossier in self.dossiers:
            counts[dossier.status] = counts.get(dossier.status, 0) + 1
        return counts

    def csv_text(self, dossiers: Sequence[SimDossier]) -> str:
        """An officer's export: Vietnamese headers, local dates, personal data included as the real one."""
        return csv_export(dossiers)

    # --- time --------------------------------------------------------------------------------------

    def simulate_until(self, now: datetime) -> SimulationReport:
        """Process every tick that has ended by `now`; returns what changed."""
        # Tick k covers [k * TICK, (k + 1) * TICK) and is processed once it has ended.
        ticks_end = int(now.timestamp()) // TICK_SECONDS
        counts = dict.fromkeys(SimulationReport.__slots__, 0)
        lifecycle = self._lifecycle
        while self._next_tick < ticks_end:
            start = self._next_tick * TICK_SECONDS
            end = start + TICK_SECONDS
            self._next_tick += 1
            start_line = to_line(datetime.fromtimestamp(start, VN))
            working = to_line(datetime.fromtimestamp(end, VN)) - start_line
            if not working and not lifecycle.due_before(end):
                continue
            visible_at = datetime.fromtimestamp(end, VN)
            changed = False
            if working and self._arrival_rate:
                expected = self._arrival_rate * working
                arrivals = int(expected) + (1 if self._rng.random() < expected - int(expected) else 0)
                for _ in range(arrivals):
                    at = from_line(start_line + _below(self._rng, working))
                    self._arrive(at, visible_at)
                    counts["arrived"] += 1
                    changed = True
            while lifecycle.due_before(end):
                timestamp, _, dossier_id, kind = lifecycle.pop()
                at = datetime.fromtimestamp(timestamp, VN)
                lifecycle.apply(self.dossiers[dossier_id - 1], kind, at, visible_at)
                if kind in REPORT_FIELDS:
                    counts[REPORT_FIELDS[kind]] += 1
                changed = True
            if changed:
                self.version += 1
                self._selection_cache.clear()
        return SimulationReport(**counts)

    # --- generation ----------------------------------------------------------------------------------

    def _generate(self, count: int) -> None:
        rng = self._rng
        now = self.generated_at
        now_line = to_line(now)
        procedures = rng.choices(PROCEDURES, cum_weights=self._open_cum_weights, k=count)
        drafts = []
        for procedure in procedures:
            unit = _UNITS_BY_CODE[procedure.unit_codes[_below(rng, len(procedure.unit_codes))]]
            duration = procedure.working_seconds
            roll = rng.random()
            if roll < 0.02:
                # Submitted online, not yet received: no receiveDate, no dueDate yet.
                created = now - timedelta(seconds=_below(rng, 60, 20 * HOUR_SECONDS))
                drafts.append((created, None, procedure, unit, "new", roll))
                continue
            # Elapsed share of the processing time: above 1 means already overdue.
            elapsed = int(duration * rng.uniform(0.02, 1.3))
            received = from_line(now_line - elapsed - _below(rng, 0, 600))
            drafts.append((received, received, procedure, unit, "open", roll))
        drafts.sort(key=lambda draft: draft[0])
        for created, received, procedure, unit, kind, roll in drafts:
            dossier = self._new_dossier(procedure, unit, created, received, modified=created)
            if kind == "new":
                dossier.status = "new"
                dossier.step = STEP_RECEIVE
                dossier.online = True
                self._lifecycle.plan(dossier, now)
                continue
            assert received is not None and dossier.due_at is not None
            received_line = to_line(received)
            due_line = to_line(dossier.due_at)
            span = max(now_line - received_line, 1)
            dossier.modified_at = from_line(received_line + _below(rng, span))
            if roll < 0.08:
                # Recently finished.
                release_line = received_line + _below(rng, span)
                dossier.released_at = from_line(release_line)
                dossier.status = "releasing"
                dossier.step = STEP_RETURN
                dossier.modified_at = dossier.released_at
                if rng.random() < 0.5 and now_line - release_line > 1800:
                    finish_line = release_line + _below(rng, 1800, now_line - release_line)
                    dossier.finished_at = from_line(finish_line)
                    dossier.status = "done"
                    dossier.modified_at = dossier.finished_at
                else:
                    self._lifecycle.push(from_line(now_line + _below(rng, 1800, DAY_SECONDS)), dossier, DONE)
                continue
            if roll < 0.16:
                # Waiting for papers: the clock is stopped.
                paused_at = from_line(received_line + _below(rng, span))
                self._lifecycle.pause(dossier, paused_at, now)
                dossier.modified_at = paused_at
                continue
            if roll < 0.22:
                # Given an extension: extendDate after dueDate, dueDate unchanged.
                granted = from_line(received_line + _below(rng, span))
                new_due = from_line(round_up_quarter(due_line + rng.randint(1, 5) * DAY_SECONDS))
                dossier.extend_at = new_due
                dossier.extensions.append(Extension(granted, dossier.due_at, new_due))
                dossier.modified_at = granted
            elif roll < 0.27 and span > 2 * HOUR_SECONDS:
                # Paused and resumed earlier: the due date already moved once.
                paused_line = received_line + _below(rng, span // 2)
                resumed_line = min(paused_line + rng.randint(HOUR_SECONDS, 2 * DAY_SECONDS), now_line - 1)
                previous_due = from_line(round_up_quarter(due_line - (resumed_line - paused_line)))
                dossier.supplements.append(
                    Supplement(from_line(paused_line), from_line(resumed_line), previous_due, dossier.due_at)
                )
                dossier.modified_at = from_line(resumed_line)
            elif roll < 0.5:
                dossier.step = STEP_APPROVE
                dossier.assignee = unit.officers[0]
            self._lifecycle.plan(dossier, now)

    def _new_dossier(
        self,
        procedure: Procedure,
        unit: Unit,
        created: datetime,
        received: datetime | None,
        modified: datetime,
    ) -> SimDossier:
        rng = self._rng
        day = f"{created.year % 100:02d}{created.month:02d}{created.day:02d}"
        sequence = self._daily_seq.get((unit.code, day), 0) + 1
        self._daily_seq[(unit.code, day)] = sequence
        dossier_id = len(self.dossiers) + 1
        due = None
        if received is not None:
            due = from_line(round_up_quarter(to_line(received) + procedure.working_seconds))
        family = FAMILY_NAMES[_below(rng, len(FAMILY_NAMES))]
        middle = MIDDLE_NAMES[_below(rng, len(MIDDLE_NAMES))]
        given = GIVEN_NAMES[_below(rng, len(GIVEN_NAMES))]
        phone = f"09{_below(rng, 10**8):08d}"
        applicant = Applicant(
            name=f"{family} {middle} {given}",
            phone=phone,
            email=f"congdan{_below(rng, 10**6):06d}@example.vn" if rng.random() < 0.3 else "",
            address=f"Ấp {rng.randint(1, 6)}, {unit.place}, tỉnh Đồng Tháp",
        )
        officers = unit.officers
        dossier = SimDossier(
            dossier_id=dossier_id,
            dossier_no=f"{self.code_prefix}{unit.code}-{day}-{sequence:04d}",
            reference_uid=f"{rng.getrandbits(128):032x}",
            procedure=procedure,
            unit=unit,
            created_at=created,
            received_at=received,
            due_at=due,
            status="processing",
            assignee=officers[1 + _below(rng, len(officers) - 1)],
            last_actor=officers[-1],
            online=rng.random() < 0.45,
            via_postal=rng.random() < 0.15,
            applicant=applicant,
            modified_at=modified,
        )
        self.dossiers.append(dossier)
        self._by_key[str(dossier_id)] = dossier
        self._by_key[dossier.dossier_no] = dossier
        return dossier

    def _arrive(self, at: datetime, visible_at: datetime) -> None:
        procedure = self._rng.choices(PROCEDURES, cum_weights=self._cum_weights)[0]
        unit = _UNITS_BY_CODE[procedure.unit_codes[_below(self._rng, len(procedure.unit_codes))]]
        dossier = self._new_dossier(procedure, unit, at, at, modified=visible_at)
        self._lifecycle.plan(dossier, at)


def _below(rng: random.Random, upper: int, high: int | None = None) -> int:
    """`randrange(upper)` or `randrange(upper, high)`, faster: generation draws millions of these."""
    if high is None:
        return int(rng.random() * upper)
    return upper + int(rng.random() * (high - upper))


def _accumulate(values: Iterable[float]) -> Iterable[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


def _in_view(dossier: SimDossier, top: str, now: datetime) -> bool:
    """OpenCPS ready-made views: overdue, coming (due soon), delay (extended)."""
    if top == "delay":
        extend, due = dossier.extend_at, dossier.due_at
        return extend is not None and due is not None and extend > due
    if dossier.finished or dossier.lock_state or dossier.due_at is None:
        return False
    if top == "overdue":
        return dossier.due_at < now
    if top == "coming":
        lead = DAY_SECONDS if dossier.procedure.duration_unit == 0 else HOUR_SECONDS
        return from_line(to_line(dossier.due_at) - lead) <= now <= dossier.due_at
    return True
