"""End-to-end ingestion throughput: sim (blast, separate process) -> collector -> PostgreSQL.

Run:  python bench/throughput.py [--frames 500000] [--markets 100] [--naive-frames 20000]

Two contenders read the same kind of stream from a fresh ``kalshi-rl sim --blast N`` process
(pre-encoded snapshot + delta frames written as fast as the socket takes them):

* ours  -- ``kalshi_rl.commands.collect.run_collector``: picows feed on uvloop, orjson +
  memoised exact decoding, one Numba book call per loop iteration, rings, binary COPY writer;
* naive -- ``websockets`` client + ``json.loads`` + ``Decimal`` + one ``INSERT`` per delta
  via ``asyncpg.execute`` (autocommit): what a first version usually looks like.

Rate = delta rows durable in PostgreSQL / (time of the last commit - arrival of the first
delta).  At the end the rows are counted in the database: every delta must be there (zero
loss) and, for ours, every book valid with zero gaps.  Also reported: the sim's own send
rate and our p99 frame-to-book latency (recv timestamp -> book updated).

PostgreSQL: ``DATABASE_URL`` (a server where we may CREATE DATABASE) or a throwaway
embedded server in a temp dir.  Prints a Markdown table for bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kalshi_rl.commands.collect import run_collector  # noqa: E402
from kalshi_rl.config import CollectorConfig, FeedConfig  # noqa: E402
from kalshi_rl.store import db  # noqa: E402
from kalshi_rl.store.writer import WriterConfig  # noqa: E402

# bigger COPY batches than the live default: at blast rates the per-statement cost shows
WCFG = WriterConfig(flush_interval_s=0.05, flush_rows=65_536, max_batch_rows=131_072)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SimProcess:
    """``python -m kalshi_rl.sim --blast N`` on a free port, in its own process."""

    def __init__(self, frames: int, markets: int, seed: int, rate: float = 1.0) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kalshi_rl.sim",
                "--port",
                str(self.port),
                "--markets",
                str(markets),
                "--blast",
                str(frames),
                "--no-auth",
                "--rate",
                str(rate),
                "--seed",
                str(seed),
                "--ping-interval",
                "30",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.ws_url = f"ws://127.0.0.1:{self.port}/trade-api/ws/v2"
        self.rest_url = f"http://127.0.0.1:{self.port}/trade-api/v2"
        self.control = f"http://127.0.0.1:{self.port}/sim/control"

    async def ready(self, timeout: float = 300.0) -> None:
        end = time.monotonic() + timeout
        async with httpx.AsyncClient() as c:
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise RuntimeError(f"sim exited early: {err[-2000:]}")
                try:
                    r = await c.get(self.control + "/status")
                    if r.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("sim did not come up")

    async def status(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as c:
            r = await c.get(self.control + "/status")
            return dict(r.json()["result"])

    async def tickers(self) -> list[str]:
        async with httpx.AsyncClient() as c:
            out: list[str] = []
            cursor = None
            while True:
                params: dict[str, Any] = {"limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                body = (await c.get(self.rest_url + "/markets", params=params)).json()
                out += [m["ticker"] for m in body["markets"]]
                cursor = body.get("cursor")
                if not cursor:
                    return out

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def count_rows(dsn: str, session_id: int) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        out = {}
        for t in ("orderbook_deltas", "orderbook_snapshots", "feed_gaps"):
            out[t] = int(
                await conn.fetchval(f"SELECT count(*) FROM {t} WHERE session_id = $1", session_id)
            )
        out["delta_rec_ids"] = int(
            await conn.fetchval(
                "SELECT count(DISTINCT rec_id) FROM orderbook_deltas WHERE session_id = $1",
                session_id,
            )
        )
        return out
    finally:
        await conn.close()


# --------------------------------------------------------------------------- ours
async def run_ours(dsn: str, frames: int, markets: int, spill: Path, shards: int) -> dict[str, Any]:
    sim = SimProcess(frames, markets, seed=1)
    try:
        await sim.ready()
        tickers = await sim.tickers()
        n_deltas = int((await sim.status())["stats"]["blast_prepared"]) - len(tickers)
        stop = asyncio.Event()
        holder: dict[str, Any] = {}
        cfg = CollectorConfig(
            rest_url=sim.rest_url,
            tickers=tuple(tickers),
            database_url=dsn,
            mode="sim",
            ring_capacity=1 << 20,
            progress_interval_s=0.0,
            spill_dir=str(spill),
        )
        fcfg = FeedConfig(
            ws_url=sim.ws_url, subscribe_chunk=max(len(tickers), 1), channels=("orderbook_delta",)
        )

        def started(feed: Any, writer: Any) -> None:
            holder["feed"], holder["writer"] = feed, writer

        task = asyncio.create_task(
            run_collector(cfg, fcfg, stop=stop, on_started=started, writer_config=WCFG)
        )
        while "feed" not in holder:
            await asyncio.sleep(0.001)
        feed, writer = holder["feed"], holder["writer"]
        t_first = None
        t_last = None
        t_fed = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if t_first is None and feed.stats.deltas > 0:
                t_first = time.perf_counter()
            if t_fed is None and feed.stats.deltas >= n_deltas:
                t_fed = time.perf_counter()
            done = writer.rows_written["orderbook_deltas"]
            if done >= n_deltas:
                t_last = time.perf_counter()
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.0005)
        if t_first is None or t_last is None:
            raise RuntimeError(f"ours: only {writer.rows_written} of {n_deltas} deltas written")
        p99_us = feed.stats.latency_quantile_ns(0.99) / 1e3
        p50_us = feed.stats.latency_quantile_ns(0.50) / 1e3
        books_valid = feed.books_valid()
        gaps_live = feed.stats.gap_rows
        stop.set()
        res = await task
        st = await sim.status()
        blast = st["blast"][0] if st["blast"] else {}
        rows = await count_rows(dsn, res.session_id)
        return {
            "name": "ours",
            "deltas": n_deltas,
            "seconds": t_last - t_first,
            "rate": n_deltas / (t_last - t_first),
            "feed_seconds": (t_fed or t_last) - t_first,
            "feed_rate": n_deltas / ((t_fed or t_last) - t_first),
            "rows": rows,
            "writers": shards,
            "p50_us": p50_us,
            "p99_us": p99_us,
            "books_valid": books_valid,
            "markets": len(tickers),
            "gaps_live": gaps_live,
            "decode_errors": res.feed["decode_errors"],
            "sim_rate": blast.get("frames_per_s", 0.0),
            "ok": rows["orderbook_deltas"] == rows["delta_rec_ids"] == n_deltas
            and gaps_live == 0
            and books_valid == len(tickers),
        }
    finally:
        sim.close()


# --------------------------------------------------------------------------- paced latency
async def run_paced(dsn: str, rate: float, markets: int, seconds: float, spill: Path) -> dict:
    """Frame-to-book latency when the feed is not saturated (the sim's model at ``rate``)."""
    sim = SimProcess(0, markets, seed=2, rate=rate)
    try:
        await sim.ready()
        tickers = await sim.tickers()
        cfg = CollectorConfig(
            rest_url=sim.rest_url,
            tickers=tuple(tickers),
            database_url=dsn,
            mode="sim",
            ring_capacity=1 << 18,
            progress_interval_s=0.0,
            spill_dir=str(spill),
            duration_s=seconds,
        )
        holder: dict[str, Any] = {}

        def started(feed: Any, writer: Any) -> None:
            holder["feed"] = feed

        res = await run_collector(cfg, FeedConfig(ws_url=sim.ws_url), on_started=started)
        feed = holder["feed"]
        return {
            "rate_target": rate,
            "msgs": res.feed["msgs"],
            "msgs_per_s": res.feed["msgs"] / seconds,
            "p50_us": feed.stats.latency_quantile_ns(0.5) / 1e3,
            "p99_us": feed.stats.latency_quantile_ns(0.99) / 1e3,
            "resyncs": res.feed["resyncs"],
            "decode_errors": res.feed["decode_errors"],
        }
    finally:
        sim.close()


# --------------------------------------------------------------------------- naive
def _ticks(s: str) -> int:
    return int(Decimal(s) * 1000)


async def run_naive(dsn: str, frames: int, markets: int) -> dict[str, Any]:
    import websockets

    sim = SimProcess(frames, markets, seed=1)
    try:
        await sim.ready()
        tickers = await sim.tickers()
        n_deltas = int((await sim.status())["stats"]["blast_prepared"]) - len(tickers)
        conn = await asyncpg.connect(dsn)
        ids = await db.ensure_markets(conn, tickers)
        session_id = int(
            await conn.fetchval(
                "INSERT INTO feed_sessions (source, mode) VALUES ($1, 'sim') RETURNING id",
                sim.ws_url,
            )
        )
        rec_id = 0
        n = 0
        t_first = None
        async with websockets.connect(sim.ws_url, max_size=None) as ws:
            await ws.send(
                json.dumps(
                    {
                        "id": 1,
                        "cmd": "subscribe",
                        "params": {
                            "channels": ["orderbook_delta"],
                            "market_tickers": tickers,
                            "use_yes_price": False,
                        },
                    }
                )
            )
            while n < n_deltas:
                msg = json.loads(await ws.recv())
                rec_id += 1
                if msg.get("type") != "orderbook_delta":
                    continue
                if t_first is None:
                    t_first = time.perf_counter()
                m = msg["msg"]
                await conn.execute(
                    "INSERT INTO orderbook_deltas (session_id, rec_id, market_id, sid, seq,"
                    " side, price, delta, exch_ts, recv_ts, status)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,0)",
                    session_id,
                    rec_id,
                    ids[m["market_ticker"]],
                    msg["sid"],
                    msg["seq"],
                    0 if m["side"] == "yes" else 1,
                    _ticks(m["price_dollars"]),
                    int(Decimal(m["delta_fp"]) * 100),
                    m["ts_ms"],
                    time.time_ns(),
                )
                n += 1
        t_last = time.perf_counter()
        await conn.close()
        assert t_first is not None
        rows = await count_rows(dsn, session_id)
        return {
            "name": "naive",
            "deltas": n_deltas,
            "seconds": t_last - t_first,
            "rate": n_deltas / (t_last - t_first),
            "rows": rows,
            "ok": rows["orderbook_deltas"] == n_deltas,
        }
    finally:
        sim.close()


# --------------------------------------------------------------------------- main
async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="krl-throughput-"))
    pgdata = tmp / "pg"
    admin = os.environ.get("DATABASE_URL")
    try:
        if admin is None:
            admin = await asyncio.to_thread(db.start_embedded, pgdata)
        name = "bench_" + uuid.uuid4().hex[:8]
        c = await asyncpg.connect(admin)
        await c.execute(f'CREATE DATABASE "{name}"')
        await c.close()
        u = urlsplit(admin)
        dsn = urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))
        conn = await db.connect(dsn)
        await db.migrate(conn)
        await conn.close()

        ours = await run_ours(dsn, args.frames, args.markets, tmp / "spill", args.writers)
        naive = await run_naive(dsn, args.naive_frames, args.markets)
        paced = await run_paced(
            dsn, args.paced_rate, args.markets, args.paced_seconds, tmp / "spill"
        )
        ratio = ours["rate"] / naive["rate"]
        print(
            json.dumps(
                {"ours": ours, "naive": naive, "ratio": ratio, "paced": paced},
                indent=2,
                default=str,
            )
        )
        print()
        print("| contender | delta rows | seconds | rows/s durable | zero loss | p99 frame->book |")
        print("|---|---:|---:|---:|---|---:|")
        print(
            f"| ours (picows+orjson+numba+COPY) | {ours['deltas']} | {ours['seconds']:.2f} |"
            f" {ours['rate']:,.0f} | {ours['ok']} | {ours['p99_us']:.0f} us |"
        )
        print(
            f"| naive (websockets+json+INSERT) | {naive['deltas']} | {naive['seconds']:.2f} |"
            f" {naive['rate']:,.0f} | {naive['ok']} | - |"
        )
        print(
            f"\nratio ours/naive = {ratio:.1f}x; sim send rate (blast) ="
            f" {ours['sim_rate']:,.0f} frames/s; markets = {ours['markets']};"
            f" feed alone (frames applied to books) {ours['feed_rate']:,.0f} msgs/s;"
            f" delta writers = {ours['writers']}"
        )
        print(
            f"paced {paced['msgs_per_s']:,.0f} msgs/s (target {paced['rate_target']:,.0f}):"
            f" frame->book p50 {paced['p50_us']:.0f} us, p99 {paced['p99_us']:.0f} us,"
            f" resyncs {paced['resyncs']}, decode errors {paced['decode_errors']}"
        )
    finally:
        if not os.environ.get("DATABASE_URL"):
            await asyncio.to_thread(db.stop_embedded, pgdata)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=500_000, help="delta frames for ours")
    ap.add_argument("--naive-frames", type=int, default=20_000, help="delta frames for naive")
    ap.add_argument("--markets", type=int, default=100)
    ap.add_argument("--writers", type=int, default=2, help="parallel delta COPY writers")
    ap.add_argument("--paced-rate", type=float, default=20_000, help="msgs/s, latency run")
    ap.add_argument("--paced-seconds", type=float, default=5.0)
    import uvloop

    uvloop.run(main(ap.parse_args()))
