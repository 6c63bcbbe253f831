"""Fixtures every test module may use: `stores`, one store factory per engine (store_engines.py),
`postgres_stores` for what exists only on PostgreSQL (replicas sharing one database), and `silent_port`."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.store_engines import ENGINES, StoreFactory


@pytest.fixture(params=ENGINES)
def stores(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """Build stores on SQLite and, in a second run of the test, on PostgreSQL."""
    factory = StoreFactory(request.param, request.node.nodeid)
    try:
        yield factory
    finally:
        factory.drop()


@pytest.fixture
def postgres_stores(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    """PostgreSQL schemas only: for replicas sharing one database, which one daemon's SQLite file is not."""
    factory = StoreFactory("postgresql", request.node.nodeid)
    try:
        yield factory
    finally:
        factory.drop()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port something listens on and never answers (the kernel completes every handshake into
    its backlog): a port already taken, or a server that accepts and hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener.getsockname()[1]
