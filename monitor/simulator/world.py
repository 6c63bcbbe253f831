"""The simulated dossier data and how it moves with time.

Everything is driven by one seeded RNG consumed in a fixed order, and time moves in fixed ticks of
`TICK_SECONDS` aligned on the epoch: `simulate_until(t)` processes every tick that has ended by `t`.
So the state at a given time depends only on the seed, the generation time and the dossier count, not
on how often (or in which steps) time was advanced.

Each dossier carries a plan: at creation (and after each resume) its next event is drawn and queued
(pause for a supplement, extension, release early / on time / late, denial). Events take effect at the
end of their tick and set `modifiedDate` to that tick end: the moment the change becomes visible, so an
incremental sync from its previous request time never misses it.
"""

from __future__ import annotations

import csv
import heapq
import io
import json
import random
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.simulator.catalog import (
    FAMILY_NAMES,
    GIVEN_NAMES,
    MIDDLE_NAMES,
    PROCEDURES,
    STATUS_NATIONAL,
    STATUS_TEXT,
    UNITS,
    Officer,
    Procedure,
    Unit,
)
from monitor.simulator.worktime import (
    DAY_SECONDS,
    HOUR_SECONDS,
    VN,
    from_line,
    half_day_start,
    round_up_quarter,
    to_line,
)

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
FINISHED_STATUSES = frozenset({"releasing", "done", "denied"})

_UNITS_BY_CODE = {unit.code: unit for unit in UNITS}
_STEP_RECEIVE = ("200", "Tiếp nhận hồ sơ")
_STEP_REVIEW = ("300", "Thẩm định, xử lý hồ sơ")
_STEP_SUPPLEMENT = ("350", "Yêu cầu bổ sung hồ sơ")
_STEP_APPROVE = ("400", "Lãnh đạo phê duyệt")
_STEP_RETURN = ("500", "Trả kết quả")
_STEP_NONE = ("", "")

# Event kinds, in the heap as small ints.
_RECEIVE, _PAUSE, _RESUME, _EXTEND, _STEP, _RELEASE, _DONE, _DENY = range(8)


def format_local(moment: datetime | None) -> str:
    """OpenCPS date text: `dd/MM/yyyy HH:mm:ss` local time, empty string for none."""
    if moment is None:
        return ""
    if moment.tzinfo is not VN:
        moment = moment.astimezone(VN)
    # %-formatting is about three times faster than strftime, which matters at 100,000 dossiers.
    return "%02d/%02d/%04d %02d:%02d:%02d" % (  # noqa: UP031
        moment.day,
        moment.month,
        moment.year,
        moment.hour,
        moment.minute,
        moment.second,
    )


def format_national(moment: datetime | None) -> str:
    """National sync date text: `yyyyMMddHHmmss` local time, empty string for none."""
    if moment is None:
        return ""
    if moment.tzinfo is not VN:
        moment = moment.astimezone(VN)
    return "%04d%02d%02d%02d%02d%02d" % (  # noqa: UP031
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
    )


def parse_local(text: str) -> datetime:
    """`dd/MM/yyyy HH:mm:ss` or `dd/MM/yyyy` in local time; raises ValueError."""
    text = text.strip()
    for pattern in ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=VN)
        except ValueError:
            continue
    raise ValueError(f"invalid date {text!r}: use dd/MM/yyyy HH:mm:ss")


@dataclass(frozen=True, slots=True)
class Applicant:
    """Personal data: present in the source so the monitor can prove it never keeps it."""

    name: str = field(repr=False)
    phone: str = field(repr=False)
    email: str = field(repr=False)
    address: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Supplement:
    """One pause for missing papers: the clock stopped at `requested_at` and restarted at `resumed_at`."""

    requested_at: datetime
    resumed_at: datetime
    previous_due: datetime
    new_due: datetime


@dataclass(frozen=True, slots=True)
class Extension:
    """An extension granted at `granted_at`: `extendDate` = `new_due`; `dueDate` stays."""

    granted_at: datetime
    previous_due: datetime
    new_due: datetime


# Mutable on purpose: a dossier is simulation state that events update in place, and 100,000 of them
# must be cheap; its cached serialisations are dropped on every change.
@dataclass(slots=True, eq=False)
class SimDossier:
    """One dossier as the simulated system holds it."""

    dossier_id: int
    dossier_no: str
    reference_uid: str
    procedure: Procedure
    unit: Unit
    created_at: datetime
    received_at: datetime | None
    due_at: datetime | None
    status: str
    assignee: Officer
    last_actor: Officer
    online: bool
    via_postal: bool
    applicant: Applicant
    modified_at: datetime
    step: tuple[str, str] = _STEP_REVIEW
    lock_state: str = ""
    extend_at: datetime | None = None
    released_at: datetime | None = None
    finished_at: datetime | None = None
    paused_at: datetime | None = None
    supplements: list[Supplement] = field(default_factory=list)
    extensions: list[Extension] = field(default_factory=list)
    item_json: bytes | None = None
    national_json: bytes | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    def touch(self, at: datetime) -> None:
        self.modified_at = at
        self.item_json = None
        self.national_json = None

    def item(self, group_id: str) -> dict[str, object]:
        """The OpenCPS v2 list item (all strings except dossierId, durationCount, durationUnit, ...)."""
        procedure = self.procedure
        coming = ""
        step_due = ""
        if self.due_at is not None:
            # The system's own warning point: one working day before (one hour for hour-based ones).
            lead = DAY_SECONDS if procedure.duration_unit == 0 else HOUR_SECONDS
            coming = str(int(from_line(to_line(self.due_at) - lead).timestamp() * 1000))
            if self.received_at is not None and not self.finished:
                start, end = to_line(self.received_at), to_line(self.due_at)
                step_due = format_local(from_line(start + (end - start) * 7 // 10))
        applicant = self.applicant
        return {
            "dossierId": self.dossier_id,
            "groupId": int(group_id) if group_id.isdigit() else group_id,
            "dossierNo": self.dossier_no,
            "referenceUid": self.reference_uid,
            "serviceCode": procedure.code,
            "serviceName": procedure.name,
            "domainCode": procedure.domain_code,
            "domainName": procedure.domain_name,
            "govAgencyCode": self.unit.code,
            "govAgencyName": self.unit.name,
            "createDate": format_local(self.created_at),
            "modifiedDate": format_local(self.modified_at),
            "submitDate": format_local(self.created_at) if self.online else "",
            "receiveDate": format_local(self.received_at),
            "dueDate": format_local(self.due_at),
            "extendDate": format_local(self.extend_at),
            "releaseDate": format_local(self.released_at),
            "finishDate": format_local(self.finished_at),
            "dossierStatus": self.status,
            "dossierStatusText": STATUS_TEXT[self.status],
            "dossierSubStatus": "",
            "dossierSubStatusText": "",
            "lockState": self.lock_state,
            "online": "true" if self.online else "false",
            "viaPostal": "1" if self.via_postal else "0",
            "durationCount": float(procedure.duration_count),
            "durationUnit": procedure.duration_unit,
            "dueDateComing": coming,
            "stepCode": self.step[0],
            "stepName": self.step[1],
            "stepDuedate": step_due,
            "currentActionUser": "" if self.finished else self.assignee.name,
            "lastActionUserId": self.last_actor.user_id,
            "applicantName": applicant.name,
            "applicantIdType": "citizen",
            "contactTelNo": applicant.phone,
            "contactEmail": applicant.email,
            "address": applicant.address,
        }

    def national(self) -> dict[str, object]:
        """The record in the national sync shape (DongBoHoSoMC); every value is a string."""
        applicant = self.applicant
        return {
            "MaHoSo": self.dossier_no,
            "MaTTHC": self.procedure.code,
            "TenTTHC": self.procedure.name,
            "MaLinhVuc": self.procedure.domain_code,
            "TenLinhVuc": self.procedure.domain_name,
            "KenhThucHien": "2" if self.online else "1",
            "ChuHoSo": applicant.name,
            "LoaiDoiTuong": "1",
            "SoDienThoai": applicant.phone,
            "Email": applicant.email,
            "DiaChi": applicant.address,
            "NgayTiepNhan": format_national(self.received_at),
            "NgayHenTra": format_national(self.due_at),
            "NgayGiaHan": format_national(self.extend_at),
            "TrangThaiHoSo": STATUS_NATIONAL[self.status],
            "NgayKetThucXuLy": format_national(self.released_at),
            "NgayTra": format_national(self.finished_at),
            "HinhThuc": "1" if self.via_postal else "0",
            "DonViXuLy": self.unit.name,
            "MaDonViXuLy": self.unit.code,
            "NgayCapNhat": format_national(self.modified_at),
            "DanhSachHoSoBoSung": [
                {
                    "HoSoBoSungId": f"{self.dossier_id}-{index}",
                    "NguoiYeuCauBoSung": self.assignee.name,
                    "NoiDungYeuCauBoSung": "Bổ sung giấy tờ còn thiếu theo quy định",
                    "NgayBoSung": format_national(supplement.requested_at),
                    "NgayTiepNhanBoSung": format_national(supplement.resumed_at),
                    "NgayHenTraTruoc": format_national(supplement.previous_due),
                    "NgayHenTraMoi": format_national(supplement.new_due),
                }
                for index, supplement in enumerate(self.supplements, start=1)
            ],
            "DanhSachGiaHanXuLy": [
                {
                    "NgayGiaHan": format_national(extension.granted_at),
                    "NgayHenTraTruoc": format_national(extension.previous_due),
                    "NgayHenTraMoi": format_national(extension.new_due),
                }
                for extension in self.extensions
            ],
        }

    def item_bytes(self, group_id: str) -> bytes:
        if self.item_json is None:
            self.item_json = _dumps(self.item(group_id))
        return self.item_json

    def national_bytes(self) -> bytes:
        if self.national_json is None:
            self.national_json = _dumps(self.national())
        return self.national_json


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


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


_REPORT_FIELDS = {
    _RECEIVE: "received",
    _PAUSE: "paused",
    _RESUME: "resumed",
    _EXTEND: "extended",
    _RELEASE: "released",
    _DONE: "done",
    _DENY: "denied",
}

CSV_HEADERS = (
    "STT",
    "Mã hồ sơ",
    "Mã thủ tục",
    "Tên thủ tục",
    "Lĩnh vực",
    "Mã đơn vị",
    "Đơn vị xử lý",
    "Chủ hồ sơ",
    "Số điện thoại",
    "Ngày tiếp nhận",
    "Ngày hẹn trả",
    "Ngày gia hạn",
    "Ngày có kết quả",
    "Ngày trả kết quả",
    "Trạng thái",
    "Cán bộ xử lý",
    "Trả qua bưu chính",
)


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
        self._events: list[tuple[int, int, int, int]] = []
        self._event_seq = 0
        self._daily_seq: dict[tuple[str, str], int] = {}
        self._rng = random.Random(seed)
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
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(CSV_HEADERS)
        for index, dossier in enumerate(dossiers, start=1):
            writer.writerow(
                (
                    index,
                    dossier.dossier_no,
                    dossier.procedure.code,
                    dossier.procedure.name,
                    dossier.procedure.domain_name,
                    dossier.unit.code,
                    dossier.unit.name,
                    dossier.applicant.name,
                    dossier.applicant.phone,
                    format_local(dossier.received_at),
                    format_local(dossier.due_at),
                    format_local(dossier.extend_at),
                    format_local(dossier.released_at),
                    format_local(dossier.finished_at),
                    STATUS_TEXT[dossier.status],
                    "" if dossier.finished else dossier.assignee.name,
                    "Có" if dossier.via_postal else "Không",
                )
            )
        return buffer.getvalue()

    # --- time --------------------------------------------------------------------------------------

    def simulate_until(self, now: datetime) -> SimulationReport:
        """Process every tick that has ended by `now`; returns what changed."""
        # Tick k covers [k * TICK, (k + 1) * TICK) and is processed once it has ended.
        ticks_end = int(now.timestamp()) // TICK_SECONDS
        counts = dict.fromkeys(SimulationReport.__slots__, 0)
        events = self._events
        while self._next_tick < ticks_end:
            start = self._next_tick * TICK_SECONDS
            end = start + TICK_SECONDS
            self._next_tick += 1
            start_line = to_line(datetime.fromtimestamp(start, VN))
            working = to_line(datetime.fromtimestamp(end, VN)) - start_line
            if not working and not (events and events[0][0] < end):
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
            while events and events[0][0] < end:
                timestamp, _, dossier_id, kind = heapq.heappop(events)
                at = datetime.fromtimestamp(timestamp, VN)
                self._apply(self.dossiers[dossier_id - 1], kind, at, visible_at)
                if kind in _REPORT_FIELDS:
                    counts[_REPORT_FIELDS[kind]] += 1
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
                dossier.step = _STEP_RECEIVE
                dossier.online = True
                self._plan(dossier, now)
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
                dossier.step = _STEP_RETURN
                dossier.modified_at = dossier.released_at
                if rng.random() < 0.5 and now_line - release_line > 1800:
                    finish_line = release_line + _below(rng, 1800, now_line - release_line)
                    dossier.finished_at = from_line(finish_line)
                    dossier.status = "done"
                    dossier.modified_at = dossier.finished_at
                else:
                    self._push(from_line(now_line + _below(rng, 1800, DAY_SECONDS)), dossier, _DONE)
                continue
            if roll < 0.16:
                # Waiting for papers: the clock is stopped.
                paused_at = from_line(received_line + _below(rng, span))
                self._pause(dossier, paused_at, now)
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
                dossier.step = _STEP_APPROVE
                dossier.assignee = unit.officers[0]
            self._plan(dossier, now)

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
        self._plan(dossier, at)

    # --- plans and events ------------------------------------------------------------------------------

    def _push(self, at: datetime, dossier: SimDossier, kind: int) -> None:
        self._event_seq += 1
        heapq.heappush(self._events, (int(at.timestamp()), self._event_seq, dossier.dossier_id, kind))

    def _plan(self, dossier: SimDossier, at: datetime) -> None:
        """Draw and queue the dossier's next event, strictly after `at`."""
        rng = self._rng
        at_line = to_line(at)
        if dossier.status == "new":
            self._push(from_line(at_line + rng.randint(600, DAY_SECONDS)), dossier, _RECEIVE)
            return
        assert dossier.due_at is not None
        due_line = to_line(dossier.due_at)
        remaining = due_line - at_line
        choice = rng.random()
        if choice < 0.12 and not dossier.supplements and remaining > HOUR_SECONDS:
            self._push(from_line(at_line + int(remaining * rng.uniform(0.05, 0.5))), dossier, _PAUSE)
            return
        if choice < 0.22 and dossier.extend_at is None and remaining > HOUR_SECONDS:
            self._push(from_line(at_line + int(remaining * rng.uniform(0.5, 0.95))), dossier, _EXTEND)
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
        if release_line - at_line > 2 * HOUR_SECONDS and dossier.step != _STEP_APPROVE:
            self._push(from_line(at_line + (release_line - at_line) // 2), dossier, _STEP)
        kind = _DENY if rng.random() < 0.02 else _RELEASE
        self._push(from_line(release_line), dossier, kind)

    def _pause(self, dossier: SimDossier, at: datetime, now: datetime) -> None:
        dossier.status = "waiting"
        dossier.lock_state = "PAUSE"
        dossier.step = _STEP_SUPPLEMENT
        dossier.paused_at = at
        resume_line = max(to_line(at), to_line(now)) + self._rng.randint(DAY_SECONDS // 2, 3 * DAY_SECONDS)
        self._push(from_line(resume_line), dossier, _RESUME)

    def _apply(self, dossier: SimDossier, kind: int, at: datetime, visible_at: datetime) -> None:
        rng = self._rng
        previous_assignee = dossier.assignee
        if kind == _RECEIVE:
            dossier.received_at = at
            dossier.due_at = from_line(round_up_quarter(to_line(at) + dossier.procedure.working_seconds))
            dossier.status = "processing"
            dossier.step = _STEP_REVIEW
            self._plan(dossier, at)
        elif kind == _PAUSE:
            self._pause(dossier, at, at)
        elif kind == _RESUME:
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
            dossier.step = _STEP_REVIEW
            self._plan(dossier, at)
        elif kind == _EXTEND:
            assert dossier.due_at is not None
            new_due = from_line(round_up_quarter(to_line(dossier.due_at) + rng.randint(1, 5) * DAY_SECONDS))
            dossier.extend_at = new_due
            dossier.extensions.append(Extension(at, dossier.due_at, new_due))
            self._plan(dossier, at)
        elif kind == _STEP:
            if dossier.status != "processing":
                return
            dossier.step = _STEP_APPROVE
            dossier.assignee = dossier.unit.officers[0]
        elif kind == _RELEASE:
            dossier.status = "releasing"
            dossier.released_at = at
            dossier.step = _STEP_RETURN
            self._push(from_line(to_line(at) + rng.randint(1800, DAY_SECONDS)), dossier, _DONE)
        elif kind == _DONE:
            dossier.status = "done"
            dossier.finished_at = at
            dossier.step = _STEP_NONE
        elif kind == _DENY:
            dossier.status = "denied"
            dossier.finished_at = at
            dossier.step = _STEP_NONE
        dossier.last_actor = previous_assignee
        dossier.touch(visible_at)


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
