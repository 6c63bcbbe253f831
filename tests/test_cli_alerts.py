"""`tthc-monitor alerts`: whole identifiers; for a pending alert, when it goes out and what it waits for.

SQLite only: `list_alerts` reads the store file named by `store.path` (the CLI's read of a PostgreSQL
store belongs with the CLI)."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from alerts.config import QuietHoursConfig
from alerts.model import AlertKind
from alerts.outbox import Outbox
from monitor.cli.alerts import list_alerts
from monitor.store import SqliteStore
from tests.alert_support import START, Clock, new_alert

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
# START is 09:00 on Wednesday 2026-03-04 in Hà Nội; quiet hours end at 06:30 the next morning.
QUIET_END = START + timedelta(hours=21, minutes=30)
LONG_PERSON = "can-bo-phong-tai-nguyen-moi-truong-0007"
LONG_CODE = "000.00.12.H12-260304-000123456789"


async def _listing(tmp_path: Path) -> dict[int, str]:
    clock = Clock(START)
    path = tmp_path / "store.db"
    async with SqliteStore(path) as store:
        outbox = Outbox(store, clock)
        await outbox.enqueue(
            [
                new_alert(1, not_before=START),
                new_alert(2, not_before=START),
                new_alert(3, not_before=QUIET_END),
                new_alert(4, not_before=QUIET_END + timedelta(hours=1)),
                new_alert(5, not_before=QUIET_END + timedelta(minutes=30), kind=AlertKind.DIGEST),
                new_alert(
                    6,
                    not_before=START,
                    person_id=LONG_PERSON,
                    subject=f"dossier:{LONG_CODE}",
                    dedupe_key="crossing:6:threshold:4h:person:long",
                ),
            ]
        )
        clock.now = START + timedelta(hours=13)  # 22:00: an alert made in quiet hours, sent when work starts
        await outbox.enqueue([new_alert(7, not_before=QUIET_END + timedelta(minutes=30))])
        clock.now = START
        claimed = {row.id: row for row in await outbox.claim(START, 2)}
        assert set(claimed) == {1, 2}
        await outbox.reschedule(1, START + timedelta(minutes=5), "sms: gateway timeout after 10s")
        await outbox.reschedule(2, START + timedelta(minutes=1), "sms: channel unavailable (AuthError)")
    out = io.StringIO()
    quiet = QuietHoursConfig()
    assert await list_alerts(path, START - timedelta(days=1), None, 100, out, ZONE, quiet, START) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "outbox: pending 7, in_flight 0, sent 0, failed 0"
    assert lines[1].split() == [
        "ID", "CREATED", "KIND", "PERSON", "SUBJECT", "STATUS", "CHANNEL", "TRIES", "SEND", "AT", "NOTE"
    ]  # fmt: skip
    return {int(line.split()[0]): line for line in lines[2:]}


async def test_pending_alerts_say_when_and_why(tmp_path: Path) -> None:
    """Backoff, an open circuit, quiet hours, working hours (alone or after quiet hours), digest hour."""
    rows = await _listing(tmp_path)
    assert rows[1].endswith(
        "2026-03-04 09:05  backoff after 1 failed attempt(s): sms: gateway timeout after 10s"
    )
    assert rows[2].endswith("2026-03-04 09:01  circuit open: sms: channel unavailable (AuthError)")
    assert rows[3].endswith("2026-03-05 06:30  quiet hours 21:00-06:30")
    assert rows[4].endswith("2026-03-05 07:30  working hours only: waits for the office to open")
    assert rows[5].endswith("2026-03-05 07:00  digest hour")
    assert rows[6].endswith("2026-03-04 09:00  due: the next delivery pass sends it")
    assert rows[7].endswith("2026-03-05 07:00  quiet hours 21:00-06:30, then working hours only")


async def test_identifiers_are_never_cut(tmp_path: Path) -> None:
    """A 39-character person id and a long dossier code are printed whole, in their columns."""
    rows = await _listing(tmp_path)
    assert f" {LONG_PERSON} " in rows[6]
    assert f" dossier:{LONG_CODE} " in rows[6]
    assert rows[1].index("can-bo-07") == rows[6].index(LONG_PERSON), "columns stay aligned"
