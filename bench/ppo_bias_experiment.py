"""The docs/training.md experiment: PPO with the shipped defaults learns the sim's planted bias.

1. record: the rolling sim (default series, 40x real time) with the real
   collector attached (``collect --all`` following the listings) into PostgreSQL, until
   ``--markets`` markets are determined;
2. dataset: ``load_history`` on the recorded session (markets settle at their result);
3. train: ``kalshi_rl.train.run.train`` with ``Args`` defaults except the dataset, seed and
   the step budget; the last 20% of segments (the latest markets) are held out;
4. report: agent vs hold, random, the naive rules, the bias-aware rule and the oracle on
   the held-out settled markets, with the P&L split (JSON + PNG + a Markdown table).

    python bench/ppo_bias_experiment.py --markets 300 --seed 0 --out /tmp/ppo-bias
    python bench/ppo_bias_experiment.py --dataset /tmp/ppo-bias/dataset --seed 1  # reuse

Needs PostgreSQL: DATABASE_URL, else the embedded server under --out.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import time
from pathlib import Path

import numpy as np

from core.dtypes import MS_DETERMINED, MS_SETTLED
from kalshi_rl.train.run import Args, TrainResult


async def record(dsn: str, out: Path, markets: int, seed: int, speed: float) -> int:
    """Run the rolling sim ``speed`` times faster than real time with the collector
    attached; returns the session id.  (``--rate 0`` outruns a collector that subscribes
    to each market as it is listed: the markets are gone before it asks.)"""
    from kalshi_rl.commands.collect import run_collector
    from kalshi_rl.config import CollectorConfig, FeedConfig
    from kalshi_rl.sim.config import SimConfig
    from kalshi_rl.sim.listings import default_series
    from kalshi_rl.sim.server import SimExchange

    cfg = SimConfig(
        series=default_series(), rate=200.0, clock_speed=speed, seed=seed, record_limit=0
    )
    async with SimExchange(cfg) as sim:
        stop = asyncio.Event()
        parts: dict[str, object] = {}
        ccfg = CollectorConfig(
            rest_url=sim.rest_url,
            all_markets=True,
            database_url=dsn,
            mode="sim",
            ring_capacity=1 << 18,
            progress_interval_s=5.0,
            spill_dir=str(out / "spill"),
            rescan_interval_s=2.0,
        )
        task = asyncio.create_task(
            run_collector(
                ccfg,
                FeedConfig(ws_url=sim.ws_url),
                stop=stop,
                echo=print,
                on_started=lambda feed, writer: parts.update(feed=feed),
            )
        )
        t0 = time.perf_counter()
        while True:
            await asyncio.sleep(0.5)
            states = [sim.model.state(m) for m in range(len(sim.tickers))]
            states += list(sim.model.retired.values())
            done = sum(
                1 for s in states if s is not None and s.status in (MS_DETERMINED, MS_SETTLED)
            )
            if done >= markets or task.done():
                break
        hours = (sim.model.now_ms - sim.model.ts0) / 3.6e6
        await asyncio.sleep(3.0)  # the last lifecycle events reach the collector
        stop.set()
        res = await asyncio.wait_for(task, 120)
        print(
            f"recorded session {res.session_id}: {done} markets determined, {hours:.2f} h of"
            f" sim time in {time.perf_counter() - t0:.0f} s wall"
        )
        return int(res.session_id)


async def build(dsn: str, out: Path, cadence_updates: int) -> Path:
    from kalshi_rl.store import db
    from kalshi_rl.store.history import HistoryQuery, load_history
    from kalshi_rl.store.parquet import save_dataset

    conn = await db.connect(dsn)
    try:
        # every N updates, not a time grid: the fast sim's clock runs ahead of the wall
        # clock, and a snapshot carries its receive time (docs/sim.md, fast mode)
        q = HistoryQuery(cadence_updates=cadence_updates, min_segment=20)
        ds = await load_history(conn, q)
    finally:
        await conn.close()
    settled = int(np.count_nonzero(ds.seg_result >= 0))
    print(f"dataset: {ds.n_rows} rows, {ds.n_segments} segments, {settled} settled")
    return save_dataset(ds, out / "dataset")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--markets", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0, help="training seed")
    ap.add_argument("--sim-seed", type=int, default=1)
    ap.add_argument("--timesteps", type=int, default=None, help="default: Args default")
    ap.add_argument("--cadence-updates", type=int, default=50)
    ap.add_argument("--no-record", action="store_true", help="build from the recorded DB")
    ap.add_argument("--clock-speed", type=float, default=40.0)
    ap.add_argument("--dataset", type=Path, default=None, help="reuse a built dataset")
    ap.add_argument(
        "--set", action="append", default=[], help="override an Args field, e.g. gamma=0.999"
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/ppo-bias"))
    a = ap.parse_args()

    from kalshi_rl.store import db

    a.out.mkdir(parents=True, exist_ok=True)
    import os

    dsn = os.environ.get("DATABASE_URL") or db.start_embedded(a.out / "pgdata")

    async def prepare() -> Path:
        conn = await db.connect(dsn)
        try:
            await db.migrate(conn)
        finally:
            await conn.close()
        if a.dataset is not None:
            return Path(a.dataset)
        if not a.no_record:
            await record(dsn, a.out, a.markets, a.sim_seed, a.clock_speed)
        return await build(dsn, a.out, a.cadence_updates)

    path = asyncio.run(prepare())

    from kalshi_rl.train.evaluate import markdown_table
    from kalshi_rl.train.run import train

    extra: dict[str, object] = {} if a.timesteps is None else {"timesteps": a.timesteps}
    for kv in a.set:  # exploration only: the documented result uses the shipped defaults
        k, _, v = kv.partition("=")
        try:  # numbers, True/False, tuples such as (128,128)
            extra[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            extra[k] = v
    args = Args(
        dataset=str(path),
        seed=a.seed,
        database_url=dsn,
        checkpoint_dir=a.out / "models",
        progress_bar=False,
        name=f"ppo-bias-s{a.seed}",
        **extra,
    )
    t0 = time.perf_counter()
    res = train(args)
    print(f"trained in {time.perf_counter() - t0:.0f} s; report in {res.checkpoint.parent}")
    sel = res.report.get("selection")
    if sel:
        print(f"selected the policy at {sel['timesteps']} env-steps (validation P&L"
              f" {sel['val_pnl']:+.2f} on {sel['val_segments']} segments)")  # fmt: skip
    print(f"test: {res.report['segments']} held-out segments")
    print(markdown_table(res.report))
    fair_table(res, Path(args.dataset), args)


def fair_table(res: TrainResult, dataset: Path, args: Args) -> None:
    """The same policies on the test markets, valued at the sim's fair value (no result
    noise; bench/fair_value_pnl.py says how)."""
    from fair_value_pnl import fair_pnl  # bench/ is this script's directory
    from stable_baselines3 import PPO

    from kalshi_rl.store.parquet import load_dataset
    from kalshi_rl.train.baselines import ModelPolicy, baseline_policies, reference_policies
    from kalshi_rl.train.evaluate import settled_only
    from kalshi_rl.train.run import split_train_val_test

    sp = split_train_val_test(load_dataset(dataset), args.val_fraction, args.eval_fraction)
    test = settled_only(sp.test)
    agent = ModelPolicy(PPO.load(res.checkpoint, device="cpu"), name="agent")
    print(f"fair-value P&L on the {test.n_segments} settled test markets:")
    print("| policy | realized P&L | fair-value P&L | trades |\n|---|---:|---:|---:|")
    for pol in [agent, *baseline_policies(args.seed)[1:], *reference_policies()]:
        r = fair_pnl(test, pol, args.env)
        print(f"| {pol.name} | {r['pnl']:+.2f} | {r['fair_pnl']:+.2f} | {r['trades']} |")


if __name__ == "__main__":
    main()
