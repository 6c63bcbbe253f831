"""Outage grouping: targets that go down together become one message per person, as Alertmanager groups.

One group per (rule, person) at a time. The first incident opens it; every incident that the rule sends
the person while the group lasts joins it. The group's first message waits `group_wait` after the first
incident began, naming every target down by then; targets that go down later are named in one follow-up
at most per `group_interval`; once every member is back, one recovered message names them all. A group
that recovers before its first message went out sends only the recovered message (which says how long
the outage lasted).

With the rule's `repeat`, the group reminds: once its first down message went out and while members are
still down, one reminder per `repeat` names the members still down (with one left, in that target's own
one-target reminder text, as a one-target outage's reminders read). Reminders are counted from the first
member's start, as they were for a single incident before grouping: the n-th is due at start + n × repeat,
and a reminder missed (the daemon was stopped) goes out once, numbered for when it is sent. Reminders
owed before the first message went out (a `repeat` shorter than `group_wait`) are skipped. The group
keeps the `repeat` its rule had when the group opened or last gained a member (a reload changes the
reminders of outages that begin, or grow, after it).

The group is a row of the `alert_timers` table (kind target_down), so a restart in the middle of
`group_wait`, or between reminders, neither loses nor repeats a message. Messages keep the incident keys
of alerts/router.py, with the group's first incident as the id:

    group:{first}:{person}                      the alert_timers row (fires at the next flush)
    incident:{first}:down:{person}              the first message (as for a one-target outage)
    incident:{first}:down:{person}:g{n}         the n-th message (n >= 2): a follow-up
    incident:{first}:down:{person}:r{n}         the n-th reminder (as for a one-target outage)
    incident:{first}:up:{person}                the recovered message

Every state change is written after the alert it follows is in the outbox: a crash in between repeats
the flush with the same key, which the outbox ignores. A finished group stays (fire_at = when to forget
it) as long as start-up re-derivation may see its incidents, so they do not open a new group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from alerts.model import AlertKind
from alerts.occurrences import OccurrenceBuilder
from alerts.templates import RenderedAlert, Templates, format_elapsed, format_targets, reason_text
from alerts.timers import Timer, Timers, epoch, from_epoch

__all__ = ["GROUP_PREFIX", "Member", "OutageGroup", "OutageGroups", "group_text"]

GROUP_PREFIX = "group:"
# message_at of a group with no down message waiting (and reminder_at of one with no reminder).
_IDLE = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Member:
    """One incident of a group."""

    incident_id: int
    target: str
    started_at: datetime
    reason: str | None
    detail: str
    ended_at: datetime | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.incident_id,
            "target": self.target,
            "at": epoch(self.started_at),
            "reason": self.reason,
            "detail": self.detail,
            "ended": None if self.ended_at is None else epoch(self.ended_at),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Member:
        ended = data.get("ended")
        return cls(
            int(data["id"]),  # type: ignore[call-overload]
            str(data["target"]),
            from_epoch(int(data["at"])),  # type: ignore[call-overload]
            None if data.get("reason") is None else str(data["reason"]),
            str(data.get("detail") or ""),
            None if ended is None else from_epoch(int(ended)),  # type: ignore[call-overload]
        )


@dataclass(frozen=True, slots=True)
class OutageGroup:
    """One person's messages about one outage (see the module docstring)."""

    person_id: str
    rule: str
    members: tuple[Member, ...]
    # Incidents already named in a down message.
    announced: frozenset[int]
    # Down messages sent so far (the next one's number is notices + 1).
    notices: int
    last_sent: datetime | None
    # When the next down message is due (_IDLE: none waits); once done: when to forget the group.
    message_at: datetime
    done: bool = False
    # The rule's `repeat` (None: no reminders), and the number of the last reminder sent.
    repeat: timedelta | None = None
    reminders: int = 0

    @property
    def first(self) -> Member:
        return self.members[0]

    @property
    def key(self) -> str:
        return f"{GROUP_PREFIX}{self.first.incident_id}:{self.person_id}"

    @property
    def all_ended(self) -> bool:
        return all(member.ended_at is not None for member in self.members)

    @property
    def fire_at(self) -> datetime:
        """When the group has something to do next: a down message, a reminder, or (done) being forgotten."""
        return self.message_at if self.done else min(self.message_at, self.reminder_at)

    @property
    def reminder_at(self) -> datetime:
        """When the next reminder is due (_IDLE: none, before the first message or once all are back)."""
        if self.repeat is None or not self.notices or not self.still_down():
            return _IDLE
        return self.first.started_at + (self.reminders + 1) * self.repeat

    def owed_reminder(self, now: datetime) -> int:
        """The number of the reminder due at `now` (see the module docstring); 0 when none is."""
        if self.repeat is None or self.reminder_at > now:
            return 0
        return self.reminders_by(now)

    def reminders_by(self, now: datetime) -> int:
        """How many `repeat`s have passed since the first member's start at `now`."""
        return 0 if self.repeat is None else int((now - self.first.started_at) / self.repeat)

    def still_down(self) -> tuple[Member, ...]:
        return tuple(member for member in self.members if member.ended_at is None)

    def unannounced(self) -> tuple[Member, ...]:
        """Members still down that no down message named yet: what the next down message names."""
        return tuple(
            member
            for member in self.members
            if member.incident_id not in self.announced and member.ended_at is None
        )

    def down_key(self) -> str:
        """The de-duplication key of the next down message."""
        base = f"incident:{self.first.incident_id}:down:{self.person_id}"
        return base if self.notices == 0 else f"{base}:g{self.notices + 1}"

    def reminder_key(self, number: int) -> str:
        return f"incident:{self.first.incident_id}:down:{self.person_id}:r{number}"

    def up_key(self) -> str:
        return f"incident:{self.first.incident_id}:up:{self.person_id}"

    def to_timer(self) -> Timer:
        return Timer(
            key=self.key,
            kind=AlertKind.TARGET_DOWN,
            name=self.person_id,
            rule=self.rule,
            since=self.first.started_at,
            fire_at=self.fire_at,
            data={
                "members": [member.to_json() for member in self.members],
                "announced": sorted(self.announced),
                "notices": self.notices,
                "last_sent": None if self.last_sent is None else epoch(self.last_sent),
                "message_at": epoch(self.message_at),
                "done": self.done,
                "repeat": None if self.repeat is None else self.repeat.total_seconds(),
                "reminders": self.reminders,
            },
        )

    @classmethod
    def from_timer(cls, timer: Timer, repeat_of: Callable[[str], timedelta | None]) -> OutageGroup:
        """The group a row holds; `repeat_of(rule)` gives the repeat of rows written before reminders were
        grouped (they kept no repeat, and their message time as the row's fire_at)."""
        data = timer.data
        last_sent = data.get("last_sent")
        message_at = data.get("message_at")
        if "repeat" in data:
            repeat = None if data["repeat"] is None else timedelta(seconds=float(data["repeat"]))
        else:
            repeat = repeat_of(timer.rule)
        return cls(
            person_id=timer.name,
            rule=timer.rule,
            members=tuple(Member.from_json(item) for item in data["members"]),
            announced=frozenset(int(item) for item in data.get("announced", ())),
            notices=int(data.get("notices", 0)),
            last_sent=None if last_sent is None else from_epoch(int(last_sent)),
            message_at=timer.fire_at if message_at is None else from_epoch(int(message_at)),
            done=bool(data.get("done", False)),
            repeat=repeat,
            reminders=int(data.get("reminders", 0)),
        )


class OutageGroups:
    """The groups, kept in `timers` (the `alert_timers` table); the router sends their messages."""

    def __init__(self, timers: Timers) -> None:
        self.timers = timers
        self._groups: dict[str, OutageGroup] = {}
        # (rule, person) → the key of their group still open.
        self._open: dict[tuple[str, str], str] = {}
        # (incident, person) → the key of the group that holds the incident for the person.
        self._holding: dict[tuple[int, str], str] = {}
        # Called after a group changed (the alert service's tick loop wakes to re-plan its sleep).
        self.on_change: Callable[[], None] | None = None

    def load(self, repeat_of: Callable[[str], timedelta | None]) -> None:
        """Pick the groups up from the timers (after `Timers.load`); `repeat_of(rule)`: the rule's repeat,
        for rows that kept none (see `OutageGroup.from_timer`)."""
        self._groups.clear()
        self._open.clear()
        self._holding.clear()
        for timer in self.timers.all():
            if timer.key.startswith(GROUP_PREFIX):
                self._index(OutageGroup.from_timer(timer, repeat_of))

    def _index(self, group: OutageGroup) -> None:
        self._groups[group.key] = group
        for member in group.members:
            self._holding[(member.incident_id, group.person_id)] = group.key
        if group.done:
            self._open.pop((group.rule, group.person_id), None)
        else:
            self._open[(group.rule, group.person_id)] = group.key

    async def _save(self, group: OutageGroup) -> OutageGroup:
        await self.timers.put(group.to_timer())
        self._index(group)
        if self.on_change is not None:
            self.on_change()
        return group

    def __len__(self) -> int:
        return len(self._groups)

    def all(self) -> list[OutageGroup]:
        return sorted(self._groups.values(), key=lambda group: (group.fire_at, group.key))

    def next_fire(self) -> datetime | None:
        """When the earliest open group's next message is due, or None when none waits."""
        waiting = [group.fire_at for group in self._groups.values() if not group.done]
        soonest = min(waiting, default=None)
        return None if soonest is None or soonest >= _IDLE else soonest

    def holds(self, incident_id: int, person_id: str) -> bool:
        return (incident_id, person_id) in self._holding

    async def join(
        self,
        member: Member,
        rule: str,
        person_id: str,
        *,
        wait: timedelta,
        interval: timedelta,
        repeat: timedelta | None = None,
        told: bool = False,
    ) -> bool:
        """Add an incident to the person's open group of `rule`, or open one; False if already held.

        `repeat`: the rule's reminder interval (None: no reminders). `told`: the person already got this
        incident's own down message (sent before outages were grouped, found at start-up): it joins as
        announced, so no message names it again."""
        if self.holds(member.incident_id, person_id):
            return False
        key = self._open.get((rule, person_id))
        group = self._groups.get(key) if key is not None else None
        if group is None:
            announced = frozenset({member.incident_id}) if told else frozenset()
            await self._save(
                OutageGroup(
                    person_id=person_id,
                    rule=rule,
                    members=(member,),
                    announced=announced,
                    notices=1 if told else 0,
                    last_sent=member.started_at if told else None,
                    message_at=_IDLE if told else member.started_at + wait,
                    repeat=repeat,
                )
            )
            return True
        if told:
            await self._save(
                replace(
                    group,
                    members=(*group.members, member),
                    announced=group.announced | {member.incident_id},
                    repeat=repeat,
                )
            )
            return True
        message_at = group.message_at
        if group.notices and group.last_sent is not None:
            # A follow-up at most once per interval after the last message.
            message_at = min(message_at, max(group.last_sent + interval, member.started_at))
        await self._save(
            replace(group, members=(*group.members, member), message_at=message_at, repeat=repeat)
        )
        return True

    async def end(self, incident_id: int, ended_at: datetime) -> list[OutageGroup]:
        """Record that an incident ended in every group holding it; return the groups now all back."""
        complete: list[OutageGroup] = []
        for group in [group for group in self._groups.values() if not group.done]:
            if not any(m.incident_id == incident_id and m.ended_at is None for m in group.members):
                continue
            members = tuple(
                replace(m, ended_at=ended_at) if m.incident_id == incident_id else m for m in group.members
            )
            group = await self._save(replace(group, members=members))
            if group.all_ended:
                complete.append(group)
        return complete

    def due(self, now: datetime) -> list[OutageGroup]:
        """Open groups whose next message is due by `now`."""
        return [group for group in self.all() if not group.done and group.fire_at <= now]

    def complete(self) -> list[OutageGroup]:
        """Open groups whose members are all back (their recovered message is owed)."""
        return [group for group in self.all() if not group.done and group.all_ended]

    async def announced(self, group: OutageGroup, named: Sequence[Member], now: datetime) -> OutageGroup:
        """A down message naming `named` is in the outbox: wait for the next joiner (and reminder)."""
        # Reminders owed before the first message are not sent right after it.
        reminders = group.reminders if group.notices else group.reminders_by(now)
        return await self._save(
            replace(
                group,
                announced=group.announced | {member.incident_id for member in named},
                notices=group.notices + 1,
                last_sent=now,
                message_at=_IDLE,
                reminders=reminders,
            )
        )

    async def idle(self, group: OutageGroup) -> OutageGroup:
        """Nothing to send (the joiners came back before their follow-up): wait for the next one."""
        return await self._save(replace(group, message_at=_IDLE))

    async def reminded(self, group: OutageGroup, number: int) -> OutageGroup:
        """The group's reminder `number` is in the outbox: wait for the next one."""
        return await self._save(replace(group, reminders=number))

    async def finish(self, group: OutageGroup, now: datetime, keep: timedelta) -> None:
        """The group's last message is in the outbox (or it has none): keep it `keep` long, then forget it."""
        await self._save(replace(group, done=True, message_at=now + keep))

    async def forget(self, now: datetime) -> int:
        """Drop finished groups whose time is up; return how many."""
        doomed = [group for group in self._groups.values() if group.done and group.fire_at <= now]
        await self.timers.remove([group.key for group in doomed])
        for group in doomed:
            self._groups.pop(group.key, None)
            for member in group.members:
                if self._holding.get((member.incident_id, group.person_id)) == group.key:
                    del self._holding[(member.incident_id, group.person_id)]
        return len(doomed)

    async def drop_people(self, keep: Iterable[str], now: datetime, linger: timedelta) -> int:
        """Finish, without a message, the open groups of people no longer in the directory."""
        kept = set(keep)
        dropped = [g for g in self._groups.values() if not g.done and g.person_id not in kept]
        for group in dropped:
            await self.finish(group, now, linger)
        return len(dropped)


def group_text(
    templates: Templates,
    occurrences: OccurrenceBuilder,
    zone: ZoneInfo,
    group: OutageGroup,
    kind: AlertKind,
    named: Sequence[Member],
    *,
    reminder_at: datetime | None = None,
) -> RenderedAlert:
    """One target: the kind's own text, as before grouping; several: the group texts. `reminder_at`: the
    text of a reminder sent then, naming `named` (the members still down)."""
    first = named[0]
    if reminder_at is not None:
        since = min(member.started_at for member in named)
        until = reminder_at
        if len(named) == 1:
            occurrence = occurrences.target_down(
                first.incident_id,
                first.target,
                first.started_at,
                first.reason,
                first.detail,
                repeat=1,  # the text only shows whether it is a reminder, not its number
                now=reminder_at,
            )
            return templates.render(kind, occurrence.fields, occurrence.keep)
        name = "target_down_repeat"
    elif kind is AlertKind.TARGET_RECOVERED:
        until = max(member.ended_at or first.started_at for member in named)
        since = min(member.started_at for member in named)
        if len(named) == 1:
            occurrence = occurrences.target_recovered(
                first.incident_id, first.target, since, until, (until - since).total_seconds()
            )
            return templates.render(kind, occurrence.fields, occurrence.keep)
        name = "target_recovered_group"
    else:
        since = min(member.started_at for member in named)
        until = since
        if len(named) == 1 and group.notices == 0:
            occurrence = occurrences.target_down(
                first.incident_id, first.target, first.started_at, first.reason, first.detail
            )
            return templates.render(kind, occurrence.fields, occurrence.keep)
        name = "target_down_group" if group.notices == 0 else "target_down_more"
    reasons = {member.reason for member in named}
    fields = {
        "targets": format_targets([member.target for member in named]),
        "count": len(named),
        "total": len(group.members),
        "reason": reason_text(reasons.pop()) if len(reasons) == 1 else "nhiều nguyên nhân",
        "since": since.astimezone(zone),
        "until": until.astimezone(zone),
        "duration": format_elapsed(until - since),
        "incident": group.first.incident_id,
    }
    return templates.render_group(name, fields, (first.target,))
