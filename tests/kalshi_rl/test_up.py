"""The README's main job, end to end: `kalshi-rl up` records the local exchange into
PostgreSQL, builds a dataset from it, trains and registers a model, and shuts down cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kalshi_rl.store import db


@pytest.mark.slow
async def test_up_records_trains_and_registers(pg_dsn: str, tmp_path: Path) -> None:
    env = dict(os.environ, KALSHI_RL_DATA_DIR=str(tmp_path / "data"))
    env.pop("DATABASE_URL", None)
    cmd = [
        sys.executable, "-m", "kalshi_rl.cli", "up",
        "--port", "0", "--markets", "3", "--rate", "300",
        "--train-after", "6", "--timesteps", "2000", "--duration", "12",
        "--name", "smoke", "--database-url", pg_dsn,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "[up] local exchange: ws ws://127.0.0.1:" in out
    assert "[collect] msgs/s" in out
    assert "[dataset] wrote" in out
    assert "[up] training finished" in out, out[-4000:]
    assert "books valid at stop 3/3" in out  # every book was being served until shutdown

    conn = await db.connect(pg_dsn)
    try:
        session = await conn.fetchrow("SELECT * FROM feed_sessions ORDER BY id DESC LIMIT 1")
        assert session["ended_at"] is not None  # closed on shutdown
        assert session["mode"] == "sim"
        n_deltas = await conn.fetchval(
            "SELECT count(*) FROM orderbook_deltas WHERE session_id = $1", session["id"]
        )
        assert n_deltas > 500
        assert n_deltas == session["n_deltas"]  # every delta the feed took is in the table
        model = await conn.fetchrow("SELECT * FROM models WHERE name = 'smoke'")
        assert model["status"] == "ready"
        assert Path(model["checkpoint_path"]).exists()
        assert set(model["markets"]) <= set(session["markets"])
    finally:
        await conn.close()
    # the exchange's API key was made once, readable by its owner only
    key = tmp_path / "data" / "sim-key.pem"
    assert key.stat().st_mode & 0o077 == 0
