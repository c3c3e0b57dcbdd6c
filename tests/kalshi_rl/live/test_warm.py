"""A LiveNode compiles the record path's kernels before its feed connects.

The node runs in a fresh Python process (the sim, in this process, uses core.book too, and
earlier tests may have compiled everything here), so its Numba dispatchers start with no
signatures.  It records a real sim session into a real PostgreSQL; the kernels' signature
lists must be complete when ``async with LiveNode`` returns and must not grow while frames
are recorded and the session is closed: no compile ever happens on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
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


async def _run_child(
    child: str, dsn: str, tmp: Path, *, extra: tuple[str, ...] = (), traffic: str
) -> dict[str, object]:
    """Run ``child`` in a fresh interpreter against a paused sim; the sim generates traffic
    once the child printed ``traffic`` (and until it printed its next line); returns every
    JSON line's keys merged."""
    pg_dsn, tmp_path = dsn, tmp
    err_path = tmp / "child-stderr.txt"
    async with SimExchange(SimConfig(n_markets=N_MARKETS, autostart=False, seed=11)) as sim:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            child,
            sim.rest_url,
            sim.ws_url,
            pg_dsn,
            str(tmp_path / "spill"),
            ",".join(sim.tickers),
            *extra,
            stdout=asyncio.subprocess.PIPE,
            env=dict(os.environ),
            stderr=err_path.open("wb"),
            limit=1 << 24,  # one JSON line holds every kernel's signatures
        )
        assert proc.stdout is not None
        out: dict[str, object] = {}
        n_before = 1 if traffic == "entered" else 0  # lines printed before the traffic key
        loop = asyncio.get_running_loop()
        end = loop.time() + 120  # a cold Numba cache compiles for a while
        try:
            while proc.returncode is None or not proc.stdout.at_eof():
                if loop.time() > end:
                    pytest.fail(f"the child process did not finish; got {sorted(out)}")
                if traffic in out and len(out) == n_before + 1:
                    sim.advance(200)  # traffic only once the node is up
                try:
                    line = await asyncio.wait_for(proc.stdout.readline(), 0.05)
                except TimeoutError:
                    continue
                if not line:
                    break
                out.update(json.loads(line))
        finally:
            if proc.returncode is None:  # EOF: the child is exiting; give it the time to
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 30)
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    assert proc.returncode == 0, (proc.returncode, sorted(out), err_path.read_text()[-3000:])
    return out


async def test_node_compiles_record_kernels_before_the_first_frame(
    pg_dsn: str, tmp_path: Path
) -> None:
    out = await _run_child(CHILD, pg_dsn, tmp_path, traffic="entered")
    before, entered, closed = out["before"], out["entered"], out["closed"]
    assert isinstance(before, dict) and isinstance(entered, dict)
    assert all(not s for s in before.values()), before  # a fresh process: nothing compiled
    missing = [name for name, s in entered.items() if not s]
    assert not missing, f"not compiled when LiveNode entry returned: {missing}"
    # frames were recorded (deltas and snapshots COPYed) and the session closed cleanly,
    # yet no kernel gained a signature: nothing compiled on the hot path
    assert closed == entered


TRADE_CHILD = r"""
import asyncio, json, sys
import numba.core.registry
from kalshi_rl.config import CollectorConfig, FeedConfig
from kalshi_rl.live.node import LiveNode
from kalshi_rl.trade.actor import ActorConfig
from kalshi_rl.trade.risk import RiskConfig
from kalshi_rl.trade.wiring import attach_trading

def sigs():
    # every njit dispatcher of the project's modules (core.*, kalshi_rl.*) with its
    # compiled signatures: whatever the hot path calls, by whatever name
    out = {}
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod_name == "core" or mod_name.startswith(("core.", "kalshi_rl."))):
            continue
        for attr, obj in list(vars(mod).items()):
            if isinstance(obj, numba.core.registry.CPUDispatcher):
                out[f"{obj.py_func.__module__}.{obj.py_func.__name__}"] = sorted(
                    str(s) for s in obj.signatures
                )
    return out

async def main():
    rest_url, ws_url, dsn, spill, tickers, kill = sys.argv[1:7]
    cfg = CollectorConfig(rest_url=rest_url, tickers=tuple(tickers.split(",")),
                          database_url=dsn, mode="sim", ring_capacity=1 << 12,
                          progress_interval_s=0.0, spill_dir=spill)
    acfg = ActorConfig(risk=RiskConfig(kill_file=kill, close_guard_s=0.0))
    async with LiveNode(cfg, FeedConfig(ws_url=ws_url)) as node:
        tr = await attach_trading(node, "warm", acfg, account="warm")
        print(json.dumps({"attached": sigs()}), flush=True)
        while not (tr.actor.counts["fills"] >= 4 and tr.actor.counts["decisions"] >= 20):
            await asyncio.sleep(0.02)
        # the paper logs and the decisions reach PostgreSQL (their COPY encoders ran)
        async with node.pool.acquire() as conn:
            while not (await conn.fetchval("SELECT count(*) FROM paper_fills") > 0
                       and await conn.fetchval("SELECT count(*) FROM paper_orders") > 0
                       and await conn.fetchval("SELECT count(*) FROM trading_actions") > 0):
                await asyncio.sleep(0.05)
        print(json.dumps({"traded": dict(tr.actor.counts)}), flush=True)
    print(json.dumps({"closed": sigs()}), flush=True)

asyncio.run(main())
"""


async def test_trading_kernels_compile_before_the_actor_trades(pg_dsn: str, tmp_path: Path) -> None:
    """``attach_trading`` warms the trading path (paper client, its COPY writers, the
    actor's decision kernels and record ring) before the actor's listeners are on the
    node: no njit kernel of the project gains a signature while the actor trades, its
    fills and decisions are written, and the node closes."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "trade"))
    from actor_support import flip_flop_model, register

    from kalshi_rl.env.config import EnvConfig

    cfg = EnvConfig()
    await register(pg_dsn, tmp_path, "warm", flip_flop_model(cfg), cfg)
    out = await _run_child(
        TRADE_CHILD, pg_dsn, tmp_path, extra=(str(tmp_path / "trade.kill"),), traffic="attached"
    )
    attached, closed = out["attached"], out["closed"]
    assert isinstance(attached, dict) and isinstance(closed, dict)
    grown = sorted(name for name, s in closed.items() if set(s) - set(attached.get(name, [])))
    assert not grown, f"compiled while trading: {grown}"
