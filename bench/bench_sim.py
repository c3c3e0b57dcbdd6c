"""kalshi_rl.sim: ours next to the plain-Python way, in the same run.

Run (short, the machine is shared):
    pytest bench/bench_sim.py --benchmark-min-rounds=3 --benchmark-max-time=0.2 \
        --benchmark-columns=min,median,rounds --benchmark-sort=name -p no:cacheprovider

Groups pair ours with the baseline:
* ``model-<n>``: n model steps over 20 markets; the njit kernel ``generate_steps`` vs
  the same code run as Python (``generate_steps.py_func``: a Python loop calling the
  njit helpers per step, i.e. "call a kernel per event from Python").
* ``encode-<n>``: n orderbook_delta frames; ours (precomputed dollar strings, one
  f-string body per event, sid/seq prefix, header bytes) vs a dict per message through
  ``orjson.dumps`` with Decimal price/count formatting plus the same header.
* ``send-<n>``: n delta frames delivered over loopback to a client that only drains the
  socket; blast (pre-encoded frames, one write per 4096) vs the live path (generate,
  encode, one write per batch) at rate 0.  Frames/s is in ``extra_info``.
* ``match-<n>``: n limit orders from 4 users into one market's book (about half cross);
  ours (``kalshi_rl.sim.matching.Engine.submit``: per-level FIFO deques over the public
  BookSet, plus collateral, Kalshi fees and positions per fill) vs a naive price-time
  book (one Python list per side kept sorted by insertion, matched from the front, no
  accounts at all).
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from decimal import Decimal
from typing import Any

import numpy as np
import orjson
import pytest

from core.dtypes import EV_DELTA, PRICE_MAX, SIDE_NO, SIDE_YES, SIM_EVENT_DTYPE
from kalshi_rl.sim import ModelParams, SimConfig, SimExchange, wire
from kalshi_rl.sim.accounts import AccountsConfig
from kalshi_rl.sim.matching import Order
from kalshi_rl.sim.model import N_DRAWS, N_NORMALS, MarketModel, default_markets, generate_steps

STRUCTS = ("linear_cent", "tapered_deci_cent", "deci_cent")


def fresh_model() -> MarketModel:
    return MarketModel(default_markets(20, STRUCTS), seed=1, ts0=0, ms_per_step=1.0)


def kernel_args(m: MarketModel, n: int) -> tuple[Any, ...]:
    """Arguments of one generate_steps call on a private copy of the model state."""
    p = m.params
    out = np.empty(n * m.max_events_per_step + 20 * (2 * p.levels + 4), dtype=SIM_EVENT_DTYPE)
    uni = np.random.default_rng(2).random((n, N_DRAWS))
    nrm = np.random.default_rng(3).standard_normal((n, N_NORMALS))
    state = tuple(a.view(np.ndarray).copy() for a in m.kernel_state())
    return (
        out,
        uni,
        nrm,
        *state,
        *m.kernel_scalars(),
    )


def _fresh(args: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    # every round starts from the same state (the kernel mutates books and clock)
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args), {}


@pytest.mark.parametrize("n", [1_000, 10_000])
def test_model_ours(benchmark: Any, n: int) -> None:
    benchmark.group = f"model-{n}"
    args = kernel_args(fresh_model(), n)
    generate_steps(*_fresh(args)[0])  # warm the JIT
    res = benchmark.pedantic(generate_steps, setup=lambda: _fresh(args), rounds=5)
    assert res > n


@pytest.mark.parametrize("n", [1_000, 10_000])
def test_model_python(benchmark: Any, n: int) -> None:
    benchmark.group = f"model-{n}"
    args = kernel_args(fresh_model(), n)
    generate_steps(*_fresh(args)[0])
    res = benchmark.pedantic(generate_steps.py_func, setup=lambda: _fresh(args), rounds=3)
    assert res > n


def delta_events(n: int) -> list[tuple[int, int, int, int, int]]:
    m = fresh_model()
    ev = m.step(n)
    ev = ev[ev["kind"] == EV_DELTA][:n]
    return list(
        zip(
            ev["market"].tolist(),
            ev["side"].tolist(),
            ev["price"].tolist(),
            ev["qty"].tolist(),
            ev["ts"].tolist(),
            strict=True,
        )
    )


TICKERS = [s.ticker for s in default_markets(20, STRUCTS)]
MIDS = [wire.market_id(t) for t in TICKERS]


def encode_ours(events: list[tuple[int, int, int, int, int]]) -> int:
    n = 0
    for seq, (m, side, price, qty, ts) in enumerate(events, start=1):
        body = wire.delta_body(TICKERS[m], MIDS[m], side, price, qty, ts, False)
        n += len(wire.frame(wire.book_message("orderbook_delta", 1, seq, body)))
    return n


def encode_naive(events: list[tuple[int, int, int, int, int]]) -> int:
    n = 0
    for seq, (m, side, price, qty, ts) in enumerate(events, start=1):
        msg = {
            "type": "orderbook_delta",
            "sid": 1,
            "seq": seq,
            "msg": {
                "market_ticker": TICKERS[m],
                "market_id": MIDS[m],
                "price_dollars": str((Decimal(price) / 1000).quantize(Decimal("0.0001"))),
                "delta_fp": str((Decimal(qty) / 100).quantize(Decimal("0.01"))),
                "side": "yes" if side == SIDE_YES else "no",
                "ts_ms": ts,
            },
        }
        n += len(wire.frame(orjson.dumps(msg)))
    return n


@pytest.mark.parametrize("n", [1_000, 10_000])
@pytest.mark.parametrize("impl", ["ours", "naive"])
def test_encode(benchmark: Any, n: int, impl: str) -> None:
    benchmark.group = f"encode-{n}"
    events = delta_events(n)
    fn = encode_ours if impl == "ours" else encode_naive
    assert benchmark(fn, events) > 0


# ----------------------------------------------------------------------------- send


async def _drain_client(port: int, tickers: list[str], want_frames: int) -> float:
    """Raw WS client: handshake, subscribe, count frames (header parse only) until
    ``want_frames`` arrived; returns seconds from the subscribe to the last one."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write(
        (
            f"GET /trade-api/ws/v2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await r.readuntil(b"\r\n\r\n")
    assert b" 101 " in head, head
    payload = orjson.dumps(
        {
            "id": 1,
            "cmd": "subscribe",
            "params": {"channels": ["orderbook_delta"], "market_tickers": tickers},
        }
    )
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert 126 <= len(payload) < 65536
    hdr = bytes((0x81, 0x80 | 126)) + len(payload).to_bytes(2, "big")
    t0 = time.perf_counter()
    w.write(hdr + mask + masked)
    buf = b""
    frames = 0
    while frames < want_frames:
        chunk = await r.read(1 << 20)
        if not chunk:
            break
        buf += chunk
        pos = 0
        n = len(buf)
        while pos + 2 <= n:
            ln = buf[pos + 1] & 0x7F
            hl = 2
            if ln == 126:
                if pos + 4 > n:
                    break
                ln = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                hl = 4
            elif ln == 127:
                if pos + 10 > n:
                    break
                ln = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hl = 10
            if pos + hl + ln > n:
                break
            if buf[pos] == 0x81:
                frames += 1
            pos += hl + ln
        buf = buf[pos:]
    dt = time.perf_counter() - t0
    w.close()
    return dt


def run_send(impl: str, n: int) -> dict[str, float]:
    """Frames/s of one delivery of about n delta frames (plus 20 snapshots + 1 ack)."""

    async def main() -> dict[str, float]:
        if impl == "blast":
            cfg = SimConfig(n_markets=20, blast_frames=n, record_limit=0)
        else:
            cfg = SimConfig(n_markets=20, rate=0, record_limit=0, batch_steps=4096)
        async with SimExchange(cfg) as sim:
            want = (sim.stats["blast_prepared"] if impl == "blast" else n + 20) + 1
            dt = await _drain_client(sim.port, sim.tickers, want)
            return {"frames": want, "seconds": dt, "frames_per_s": want / dt}

    return asyncio.run(main())


@pytest.mark.parametrize("n", [50_000, 200_000])
@pytest.mark.parametrize("impl", ["blast", "live"])
def test_send(benchmark: Any, n: int, impl: str) -> None:
    benchmark.group = f"send-{n}"
    res = benchmark.pedantic(run_send, args=(impl, n), rounds=1, iterations=1)
    benchmark.extra_info.update(res)
    assert res["frames_per_s"] > 0


# ----------------------------------------------------------------------------- matching
def order_stream(n: int, seed: int = 5) -> list[tuple[int, int, int, int]]:
    """(user, book side, price on that side, count) of n orders around $0.50, cent grid."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        side = SIDE_YES if rng.random() < 0.5 else SIDE_NO
        yes_px = 500 + 10 * int(rng.integers(-6, 7))
        px = yes_px if side == SIDE_YES else PRICE_MAX - yes_px
        out.append((int(rng.integers(4)), side, px, 100 * int(rng.integers(1, 11))))
    return out


def fresh_engine() -> Any:
    """A sim engine over one linear_cent market with an empty maker book."""
    cfg = SimConfig(n_markets=1, autostart=False, record_limit=0, structures=("linear_cent",),
                    model=ModelParams(levels=1, max_quote=1))  # fmt: skip
    sim = SimExchange(cfg, AccountsConfig(starting_balance=10**15))
    b = sim.markets.model.books
    b.qty[0] = 0  # only the users' orders: the same book the naive one sees
    b.best[0] = -1
    sim.markets.sync_public()
    return sim.engine


def match_ours(stream: list[tuple[int, int, int, int]], x: Any) -> int:
    """Fills after submitting the stream to the sim's engine."""
    users = [f"u{i}" for i in range(4)]
    for i, (u, side, px, count) in enumerate(stream):
        x.submit(Order(str(i), users[u], "", 0, side, px, count))
    return int(x.stats["fills"])


class NaiveBook:
    """Price-time priority the plain way: one sorted list of [price, seq, qty] per side."""

    def __init__(self) -> None:
        self.sides: list[list[list[int]]] = [[], []]
        self.fills = 0

    def submit(self, seq: int, side: int, px: int, qty: int) -> None:
        opp = self.sides[1 - side]
        while qty > 0 and opp and opp[0][0] + px >= PRICE_MAX:
            take = min(qty, opp[0][2])
            opp[0][2] -= take
            qty -= take
            self.fills += 1
            if opp[0][2] == 0:
                opp.pop(0)
        if qty > 0:
            mine = self.sides[side]
            i = 0
            while i < len(mine) and (mine[i][0] > px or (mine[i][0] == px and mine[i][1] < seq)):
                i += 1
            mine.insert(i, [px, seq, qty])


def match_naive(stream: list[tuple[int, int, int, int]]) -> int:
    book = NaiveBook()
    for i, (_, side, px, count) in enumerate(stream):
        book.submit(i, side, px, count)
    return book.fills


@pytest.mark.parametrize("n", [2_000, 20_000])
@pytest.mark.parametrize("impl", ["ours", "naive"])
def test_match(benchmark: Any, n: int, impl: str) -> None:
    benchmark.group = f"match-{n}"
    stream = order_stream(n)
    if impl == "ours":
        fresh_engine()  # warm the fee kernels' JIT outside the timing

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            return (stream, fresh_engine()), {}

        fills = benchmark.pedantic(match_ours, setup=setup, rounds=3, iterations=1)
    else:
        fills = benchmark.pedantic(match_naive, args=(stream,), rounds=3, iterations=1)
    assert fills > n // 10
    benchmark.extra_info["fills"] = fills
    benchmark.extra_info["orders_per_s"] = n / benchmark.stats.stats.median
