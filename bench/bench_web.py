"""Dashboard streams under load: feed throughput and stream lag with 50 WebSocket clients.

    python bench/bench_web.py [--clients 50] [--seconds 8] [--markets 20] [--interval-ms 100]

One run, three phases on the same live node (the local exchange in a child process at full
speed, the node + dashboard in this process, the clients in another child process):

* baseline   -- no clients: the feed's throughput (messages/s the node applies);
* ours       -- N browser-like clients (each a tab on one market's page: that market's
                /rl/ws/orderbook at ``interval_ms`` plus /rl/ws/status): throughput again,
                and each frame's lag = client receive time - the book's last receive time
                (how stale what the browser shows is);
* naive      -- the same clients, but the hub encodes each frame once per client instead of
                once per tick (what a per-connection stream would do).

Reports the throughput drop vs the baseline (floor: < 10%) and lag p50/p99 (floor: p99 <
100 ms); exits 1 if a floor is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ client process


async def _client(base: str, ticker: str, interval_ms: int, until: float, lags: list[float],
                  counts: list[int]) -> None:  # fmt: skip
    """One browser tab on a market page: that market's ladder stream + the status bar."""
    import orjson
    import websockets

    ws_base = base.replace("http", "ws")
    book_url = f"{ws_base}/rl/ws/orderbook?markets={ticker}&interval_ms={interval_ms}"
    async with (
        websockets.connect(book_url, max_size=None, open_timeout=60) as ws,
        websockets.connect(f"{ws_base}/rl/ws/status", open_timeout=60) as status,
    ):
        n = 0
        reader = asyncio.create_task(_drain(status))
        while time.time() < until:
            try:
                raw = await asyncio.wait_for(ws.recv(), max(0.01, until - time.time()))
            except TimeoutError:
                break
            now = time.time_ns()
            msg = orjson.loads(raw)
            if msg.get("type") == "book" and msg["recv_ts_ns"] > 0:
                lags.append((now - msg["recv_ts_ns"]) / 1e6)
                n += 1
        reader.cancel()
        counts.append(n)


async def _drain(ws: Any) -> None:
    async for _ in ws:
        pass


async def _clients_main(base: str, n: int, interval_ms: int, seconds: float) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        tickers = [m["ticker"] for m in (await c.get("/rl/markets")).json()]
    lags: list[float] = []
    counts: list[int] = []
    until = time.time() + seconds
    t0 = time.time()
    tasks = []
    for i in range(n):  # tabs open one after another, not in one burst
        tasks.append(asyncio.create_task(
            _client(base, tickers[i % len(tickers)], interval_ms, until, lags, counts)
        ))  # fmt: skip
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    a = np.asarray(lags[len(lags) // 10 :])  # the first tenth holds the join snapshots
    print(json.dumps({
        "clients": len(counts), "frames": int(sum(counts)),
        "frames_per_s": sum(counts) / max(time.time() - t0, 1e-9),
        "lag_p50_ms": float(np.percentile(a, 50)) if a.size else None,
        "lag_p99_ms": float(np.percentile(a, 99)) if a.size else None,
        "lag_max_ms": float(a.max()) if a.size else None,
    }))  # fmt: skip


# ------------------------------------------------------------------ node process


async def _rate(node: Any, seconds: float) -> float:
    m0, t0 = node.feed.stats.msgs, time.perf_counter()
    await asyncio.sleep(seconds)
    return (node.feed.stats.msgs - m0) / (time.perf_counter() - t0)


async def _with_clients(node: Any, base: str, args: argparse.Namespace) -> tuple[float, dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--client-mode", base, "--clients", str(args.clients),
        "--interval-ms", str(args.interval_ms), "--seconds", str(args.seconds + 3),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )  # fmt: skip
    await asyncio.sleep(2.0)  # connected and past the join snapshots
    rate = await _rate(node, args.seconds)
    out, err = await proc.communicate()
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the client process failed:\n{err.decode()[-3000:]}")
    return rate, json.loads(lines[-1])


async def _main(args: argparse.Namespace) -> int:
    from kalshi_rl.commands.stack import live_stack
    from kalshi_rl.store import db
    from kalshi_rl.web.app import create_app, serve
    from kalshi_rl.web.config import WebConfig

    dsn = db.resolve_dsn(None)
    port = _free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "kalshi_rl.cli", "sim", "--port", str(port), "--markets",
         str(args.markets), "--rate", str(args.rate), "--no-auth"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.sleep(3.0)
        base_sim = f"127.0.0.1:{port}"
        async with live_stack(
            dsn, ws_url=f"ws://{base_sim}/trade-api/ws/v2",
            rest_url=f"http://{base_sim}/trade-api/v2", mode="sim",
        ) as st:  # fmt: skip
            node = st.node
            cfg = WebConfig(port=0, ui_dir=Path("/nonexistent"))
            app = create_app(node, cfg, actor=st.actor)
            started = asyncio.Event()
            web = asyncio.create_task(serve(app, cfg, started))
            await started.wait()
            base = f"http://127.0.0.1:{app.state.bound_port}"
            hub = app.state.web.orderbook
            await asyncio.sleep(2.0)  # warm: JIT, snapshots
            base1 = await _rate(node, args.seconds)
            ours_rate, ours = await _with_clients(node, base, args)
            busy_ours = hub.tick_busy_s
            hub.share_encoding = False
            naive_rate, naive = await _with_clients(node, base, args)
            busy_naive = hub.tick_busy_s - busy_ours
            base2 = await _rate(node, args.seconds)
            web.cancel()
            await asyncio.gather(web, return_exceptions=True)
    finally:
        sim.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim.wait(10)
    baseline = (base1 + base2) / 2
    drop = 1 - ours_rate / baseline
    print(f"markets {args.markets}, clients {args.clients}, interval {args.interval_ms} ms,"
          f" {args.seconds:.0f} s per phase")  # fmt: skip
    print(f"baseline (no clients)  {baseline:10.0f} msgs/s  ({base1:.0f} / {base2:.0f})")
    for name, rate, res, busy in (("ours", ours_rate, ours, busy_ours),
                                  ("naive", naive_rate, naive, busy_naive)):  # fmt: skip
        print(
            f"{name:22s} {rate:10.0f} msgs/s  drop {100 * (1 - rate / baseline):5.1f}%"
            f" | {res['frames_per_s']:8.0f} frames/s to clients | lag p50"
            f" {res['lag_p50_ms']:.1f} ms p99 {res['lag_p99_ms']:.1f} ms"
            f" | hub busy {busy:.2f} s"
        )
    ok = drop < 0.10 and ours["lag_p99_ms"] < 100.0
    print(f"floors (drop < 10%, lag p99 < 100 ms): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--markets", type=int, default=20)
    ap.add_argument("--rate", type=float, default=0.0, help="sim msgs/s (0: full speed)")
    ap.add_argument("--interval-ms", type=int, default=100)
    ap.add_argument("--client-mode", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import uvloop

    if args.client_mode:
        uvloop.run(_clients_main(args.client_mode, args.clients, args.interval_ms, args.seconds))
        return 0
    return uvloop.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
