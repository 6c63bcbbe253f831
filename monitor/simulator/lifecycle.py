"""How a simulated dossier moves with time: its next event drawn at random, queued, then applied.

Each dossier carries a plan: at creation (and after each resume) its next event is drawn and queued
(pause for a supplement, extension, release early / on time / late, denial). Events take effect at the
end of their tick and set `modifiedDate` to that tick end: the moment the change becomes visible, so an
incremental sync from its previous request time never misses it. Draws come from the world's one RNG,
in the order the world calls in, so the data stays a function of the seed.
"""

from __future__ import annotations

import heapq
import random
from datetime import datetime

from monitor.simulator.dossier import (
    STEP_APPROVE,
    STEP_NONE,
    STEP_RETURN,
    STEP_REVIEW,
    STEP_SUPPLEMENT,
    Extension,
    SimDossier,
    Supplement,
)
from monitor.simulator.worktime import (
    DAY_SECONDS,
    HOUR_SECONDS,
    from_line,
    half_day_start,
    round_up_quarter,
    to_line,
)

__all__ = [
    "DENY",
    "DONE",
    "EXTEND",
    "PAUSE",
    "RECEIVE",
    "RELEASE",
    "REPORT_FIELDS",
    "RESUME",
    "STEP",
    "Lifecycle",
]

# Event kinds, in the heap as small ints.
RECEIVE, PAUSE, RESUME, EXTEND, STEP, RELEASE, DONE, DENY = range(8)

# The `SimulationReport` field each kind counts in (a step within processing is not reported).
REPORT_FIELDS = {
    RECEIVE: "received",
    PAUSE: "paused",
    RESUME: "resumed",
    EXTEND: "extended",
    RELEASE: "released",
    DONE: "done",
    DENY: "denied",
}


class Lifecycle:
    """The queue of what will happen to the dossiers, and the rules that draw and apply each event."""

    __slots__ = ("_events", "_rng", "_seq")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        # (timestamp, sequence, dossier_id, kind): the sequence keeps equal timestamps in push order.
        self._events: list[tuple[int, int, int, int]] = []
        self._seq = 0

    def due_before(self, end: int) -> bool:
        """Whether an event is queued before the timestamp `end`."""
        return bool(self._events) and self._events[0][0] < end

    def pop(self) -> tuple[int, int, int, int]:
        """The earliest queued event: (timestamp, sequence, dossier_id, kind)."""
        return heapq.heappop(self._events)

    def push(self, at: datetime, dossier: SimDossier, kind: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (int(at.timestamp()), self._seq, dossier.dossier_id, kind))

    def plan(self, dossier: SimDossier, at: datetime) -> None:
        """Draw and queue the dossier's next event, strictly after `at`."""
        rng = self._rng
        at_line = to_line(at)
        if dossier.status == "new":
            self.push(from_line(at_line + rng.randint(600, DAY_SECONDS)), dossier, RECEIVE)
            return
        assert dossier.due_at is not None
        due_line = to_line(dossier.due_at)
        remaining = due_line - at_line
        choice = rng.random()
        if choice < 0.12 and not dossier.supplements and remaining > HOUR_SECONDS:
            self.push(from_line(at_line + int(remaining * rng.uniform(0.05, 0.5))), dossier, PAUSE)
            return
        if choice < 0.22 and dossier.extend_at is None and remaining > HOUR_SECONDS:
            self.push(from_line(at_line + int(remaining * rng.uniform(0.5, 0.95))), dossier, EXTEND)
            return
        lowest = at_line + 300
        early_end = to_line(half_day_start(dossier.due_at)) - 300
        outcome = rng.random()
        if outcome < 0.55 and early_end > lowest:
            release_line = rng.randint(lowest, early_end)
        elif outcome < 0.8 and due_line > max(lowest, early_end + 300):
            release_line = rng.randint(max(lowest, early_end + 300), due_line)
        else:
            late_until = to_line(dossier.extend_at) if dossier.extend_at else due_line + 2 * DAY_SECONDS
            base = max(lowest, due_line)
            release_line = base + rng.randint(600, max(late_until - base, 1200))
        if release_line - at_line > 2 * HOUR_SECONDS and dossier.step != STEP_APPROVE:
            self.push(from_line(at_line + (release_line - at_line) // 2), dossier, STEP)
        kind = DENY if rng.random() < 0.02 else RELEASE
        self.push(from_line(release_line), dossier, kind)

    def pause(self, dossier: SimDossier, at: datetime, now: datetime) -> None:
        dossier.status = "waiting"
        dossier.lock_state = "PAUSE"
        dossier.step = STEP_SUPPLEMENT
        dossier.paused_at = at
        resume_line = max(to_line(at), to_line(now)) + self._rng.randint(DAY_SECONDS // 2, 3 * DAY_SECONDS)
        self.push(from_line(resume_line), dossier, RESUME)

    def apply(self, dossier: SimDossier, kind: int, at: datetime, visible_at: datetime) -> None:
        rng = self._rng
        previous_assignee = dossier.assignee
        if kind == RECEIVE:
            dossier.received_at = at
            dossier.due_at = from_line(round_up_quarter(to_line(at) + dossier.procedure.working_seconds))
            dossier.status = "processing"
            dossier.step = STEP_REVIEW
            self.plan(dossier, at)
        elif kind == PAUSE:
            self.pause(dossier, at, at)
        elif kind == RESUME:
            assert dossier.paused_at is not None and dossier.due_at is not None
            paused = to_line(at) - to_line(dossier.paused_at)
            previous_due = dossier.due_at
            # OpenCPS pushes dueDate forward by the working time spent paused.
            dossier.due_at = from_line(round_up_quarter(to_line(previous_due) + max(paused, 900)))
            if dossier.extend_at is not None:
                # An extension counts in working time too, so the pause moves it as well.
                dossier.extend_at = from_line(round_up_quarter(to_line(dossier.extend_at) + max(paused, 900)))
            dossier.supplements.append(Supplement(dossier.paused_at, at, previous_due, dossier.due_at))
            dossier.paused_at = None
            dossier.status = "processing"
            dossier.lock_state = ""
            dossier.step = STEP_REVIEW
            self.plan(dossier, at)
        elif kind == EXTEND:
            assert dossier.due_at is not None
            new_due = from_line(round_up_quarter(to_line(dossier.due_at) + rng.randint(1, 5) * DAY_SECONDS))
            dossier.extend_at = new_due
            dossier.extensions.append(Extension(at, dossier.due_at, new_due))
            self.plan(dossier, at)
        elif kind == STEP:
            if dossier.status != "processing":
                return
            dossier.step = STEP_APPROVE
            dossier.assignee = dossier.unit.officers[0]
        elif kind == RELEASE:
            dossier.status = "releasing"
            dossier.released_at = at
            dossier.step = STEP_RETURN
            self.push(from_line(to_line(at) + rng.randint(1800, DAY_SECONDS)), dossier, DONE)
        elif kind == DONE:
            dossier.status = "done"
            dossier.finished_at = at
            dossier.step = STEP_NONE
        elif kind == DENY:
            dossier.status = "denied"
            dossier.finished_at = at
            dossier.step = STEP_NONE
        dossier.last_actor = previous_assignee
        dossier.touch(visible_at)
