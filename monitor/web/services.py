"""What the HTTP handlers read, as one small typed interface placed on the app.

The daemon satisfies `WebServices` and hands itself to `create_web_app`; handlers reach the scheduler,
the store and the services through `request.app[SERVICES]`, so web/ never imports the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from aiohttp import web

from alerts.outbox import Outbox
from monitor.config import Config
from monitor.dossiers.service import DossierService
from monitor.metrics import Metrics, TargetSeries
from monitor.reload import ReloadOutcome
from monitor.replicas.target_states import TargetState
from monitor.scheduler import Scheduler
from monitor.store.base import Store
from monitor.supervisor import Supervisor

__all__ = ["SERVICES", "AlertsView", "WebServices"]


class AlertsView(Protocol):
    """What the alert endpoint reads of the alert service: its outbox (None while it is not open)."""

    @property
    def outbox(self) -> Outbox | None: ...


class WebServices(Protocol):
    """Everything a handler may read. Properties, so that the daemon's plain attributes satisfy it."""

    @property
    def config(self) -> Config: ...

    @property
    def store(self) -> Store: ...

    @property
    def scheduler(self) -> Scheduler: ...

    @property
    def supervisor(self) -> Supervisor: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def target_series(self) -> TargetSeries: ...

    @property
    def dossiers(self) -> DossierService | None: ...

    @property
    def alerts(self) -> AlertsView | None: ...

    def now(self) -> datetime: ...

    async def target_states(self) -> Mapping[str, TargetState]:
        """Every configured target's live state this process can tell: from its own trackers, or, with
        replicas, as each target's owner published it (the same on every member)."""
        ...

    async def reload(self) -> ReloadOutcome:
        """Re-read and apply the config file (what SIGHUP does)."""
        ...


SERVICES: web.AppKey[WebServices] = web.AppKey("services")
