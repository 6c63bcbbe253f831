"""Fixtures every test module may use: `stores`, one store factory per engine (store_engines.py), and
`postgres_stores` for what exists only on PostgreSQL (replicas sharing one database)."""

from __future__ import annotations

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
