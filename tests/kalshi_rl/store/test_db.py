from __future__ import annotations

import pytest

from kalshi_rl.errors import MigrationError
from kalshi_rl.store import db


async def test_migrations_applied_once_and_idempotent(pg_dsn: str) -> None:
    conn = await db.connect(pg_dsn)
    try:
        n = len(db.migration_files())
        assert await db.schema_version(conn) == n
        assert await db.migrate(conn) == []  # second run applies nothing
        tables = {
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        for t in (
            "markets",
            "feed_sessions",
            "orderbook_snapshots",
            "orderbook_deltas",
            "trades",
            "feed_gaps",
            "models",
            "training_runs",
            "trading_episodes",
            "trading_actions",
            "paper_orders",
            "paper_fills",
            "schema_migrations",
        ):
            assert t in tables
    finally:
        await conn.close()


async def test_ensure_markets_returns_stable_ids(pg_dsn: str) -> None:
    conn = await db.connect(pg_dsn)
    try:
        a = await db.ensure_markets(conn, ["A-1", "B-2"])
        b = await db.ensure_markets(conn, ["B-2", "C-3", "A-1"])
        assert a["A-1"] == b["A-1"] and a["B-2"] == b["B-2"]
        assert len(set(b.values())) == 3
    finally:
        await conn.close()


def test_migration_numbering_holes_rejected(tmp_path) -> None:
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "003_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="expected 2"):
        db.migration_files(tmp_path)
