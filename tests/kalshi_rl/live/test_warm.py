"""A LiveNode compiles the record path's kernels before its feed connects.

The node runs in a fresh Python process (the sim, in this process, uses core.book too, and
earlier tests may have compiled everything here), so its Numba dispatchers start with no
signatures.  It records a real sim session into a real PostgreSQL; the kernels' signature
lists must be complete when ``async with LiveNode`` returns and must not grow while frames
are recorded and the session is closed: no compile ever happens on the hot path.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.server import SimExchange

N_MARKETS = 3

CHILD = r"""
import asyncio, json, sys
from core import book, ring
from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.live.node import LiveNode

KERNELS = {
    "ring_push_batch": ring.ring_push_batch,
    "ring_drain": ring.ring_drain,
    "ring_occupancy": ring.ring_occupancy,
    "copy_rows_deltas": ring.copy_rows_deltas,
    "copy_rows_snapshots": ring.copy_rows_snapshots,
    "copy_rows_trades": ring.copy_rows_trades,
    "copy_rows_gaps": ring.copy_rows_gaps,
    "book_apply_snapshot": book.book_apply_snapshot,
    "book_apply_deltas": book.book_apply_deltas,
    "book_invalidate": book.book_invalidate,
}

def sigs():
    return {name: [str(s) for s in k.signatures] for name, k in KERNELS.items()}

async def main():
    rest_url, ws_url, dsn, spill, tickers = sys.argv[1:6]
    cfg = CollectorConfig(rest_url=rest_url, tickers=tuple(tickers.split(",")),
                          database_url=dsn, mode="sim", ring_capacity=1 << 12,
                          progress_interval_s=0.0, spill_dir=spill)
    print(json.dumps({"before": sigs()}), flush=True)
    async with LiveNode(cfg, FeedConfig(ws_url=ws_url)) as node:
        print(json.dumps({"entered": sigs()}), flush=True)
        while not (node.writer.rows_written["orderbook_deltas"] > 0
                   and node.writer.rows_written["orderbook_snapshots"] > 0):
            await asyncio.sleep(0.02)
        print(json.dumps({"recorded": node.writer.rows_written}), flush=True)
    print(json.dumps({"closed": sigs(), "rows": node.writer_stats}), flush=True)

asyncio.run(main())
"""


async def test_node_compiles_record_kernels_before_the_first_frame(
    pg_dsn: str, tmp_path: Path
) -> None:
    async with SimExchange(SimConfig(n_markets=N_MARKETS, autostart=False, seed=11)) as sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            sim.rest_url,
            sim.ws_url,
            pg_dsn,
            str(tmp_path / "spill"),
            ",".join(sim.tickers),
            stdout=asyncio.subprocess.PIPE,
            env=dict(os.environ),
        )
        assert proc.stdout is not None
        out: dict[str, object] = {}
        loop = asyncio.get_running_loop()
        end = loop.time() + 120  # a cold Numba cache compiles for a while
        try:
            while proc.returncode is None or not proc.stdout.at_eof():
                if loop.time() > end:
                    pytest.fail(f"the node process did not finish; got {sorted(out)}")
                if "entered" in out and "recorded" not in out:
                    sim.advance(200)  # traffic only once the node is up
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), 0.05)
                except TimeoutError:
                    continue
                if not line:
                    break
                out.update(json.loads(line))
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out
    before, entered, closed = out["before"], out["entered"], out["closed"]
    assert isinstance(before, dict) and isinstance(entered, dict)
    assert all(not s for s in before.values()), before  # a fresh process: nothing compiled
    missing = [name for name, s in entered.items() if not s]
    assert not missing, f"not compiled when LiveNode entry returned: {missing}"
    # frames were recorded (deltas and snapshots COPYed) and the session closed cleanly,
    # yet no kernel gained a signature: nothing compiled on the hot path
    assert closed == entered
