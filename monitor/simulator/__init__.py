"""A built-in simulator of a provincial one-stop dossier system, with fault switches.

`tthc-monitor demo` runs against it and tests of probes and dossier sources use it::

    sim = Simulator(seed=7, clock=clock, dossier_count=300, state_dir=tmp_path)
    await sim.start()
    sim.portal_url, sim.app_url, sim.api_base, sim.https_url, sim.ca_file, sim.admin_url
    await sim.set_fault("down")        # or POST {admin_url}/faults {"fault": "down"}
    await sim.advance(clock() + timedelta(days=2))
    await sim.stop()

OpenCPS list API (`GET {api_base}/dossiers`): HTTP Basic auth (or the Bearer token from `POST /login`),
header `groupId`; query `status`, `agency` (comma lists; `all`), `dossierNo`, `top` (overdue, coming,
delay), `fromModifiedDate` / `toModifiedDate` (`dd/MM/yyyy HH:mm:ss` local time, inclusive, compared
with each item's `modifiedDate`), `start` / `end` (end exclusive; no end or end=0 = everything).
`viaPostal` is "1" for postal return, "0" otherwise.
"""

from __future__ import annotations

from monitor.simulator.certs import (
    CertificateAuthority,
    IssuedCertificate,
    make_ca,
    make_ca_and_leaf,
    make_leaf,
)
from monitor.simulator.faults import FAULTS, SCOPES, Fault, ScheduledFault
from monitor.simulator.server import DEFAULT_PASSWORD, MAINTENANCE_MARKER, PORTAL_MARKER, Simulator
from monitor.simulator.world import CSV_HEADERS, SimulationReport, World

__all__ = [
    "CSV_HEADERS",
    "DEFAULT_PASSWORD",
    "FAULTS",
    "MAINTENANCE_MARKER",
    "PORTAL_MARKER",
    "SCOPES",
    "CertificateAuthority",
    "Fault",
    "IssuedCertificate",
    "ScheduledFault",
    "SimulationReport",
    "Simulator",
    "World",
    "make_ca",
    "make_ca_and_leaf",
    "make_leaf",
]
