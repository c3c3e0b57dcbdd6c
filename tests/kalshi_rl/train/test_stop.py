"""Ctrl-C / the dashboard's Stop: SIGINT stops a training child at its next env step.

A real `kalshi-rl train` child process, a real PostgreSQL: the first SIGINT, sent while
the run is learning, ends the process with the run recorded as ``stopped`` and the model
version as ``failed`` (never left ``running``/``training``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import asyncpg
import pytest


async def _poll(conn: asyncpg.Connection, query: str, deadline_s: float) -> asyncpg.Record:
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while loop.time() < end:
        row = await conn.fetchrow(query)
        if row is not None:
            return row
        await asyncio.sleep(0.2)
    pytest.fail(f"no row for {query!r} within {deadline_s} s")


@pytest.mark.slow
async def test_sigint_while_learning_records_the_run_stopped(pg_dsn: str, tmp_path: Path) -> None:
    argv = [
        sys.executable, "-m", "kalshi_rl.cli", "train", "--dataset", "synthetic:6:80:1",
        "--timesteps", "50000000", "--n-envs", "8", "--name", "stopme", "--eval-every", "0",
        "--no-progress-bar", "--checkpoint-dir", str(tmp_path), "--database-url", pg_dsn,
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(os.environ),
    )
    conn = await asyncpg.connect(pg_dsn)
    try:
        # learning has begun once a progress row exists
        await _poll(conn, "SELECT 1 FROM training_progress WHERE timesteps > 0 LIMIT 1", 180)
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
        except TimeoutError:
            proc.kill()
            pytest.fail("the training child did not exit after SIGINT")
        assert proc.returncode != 0, out.decode(errors="replace")
        run = await conn.fetchrow(
            "SELECT status, error FROM training_runs WHERE id = (SELECT max(id) FROM training_runs)"
        )
        assert run is not None and run["status"] == "stopped", (
            run,
            out.decode(errors="replace")[-2000:],
        )
        status = await conn.fetchval("SELECT status FROM models WHERE name = 'stopme'")
        assert status == "failed"
        assert "stop requested" in out.decode(errors="replace")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await conn.close()
