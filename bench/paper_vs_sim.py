"""Paper fills vs the truth: one order stream to the sim's matching engine and to paper.

    python bench/paper_vs_sim.py [--takers 200] [--resting 150] [--rest-steps 60] [--seed 11]

Two local exchanges run the same seeded model in lockstep (``kalshi_rl.trade.truth``):
the *truth* one takes our orders over REST and matches them with exact price-time
priority (its takers hit resting orders FIFO); the paper clients watch the *other* one,
which never sees our orders, through the real feed client (loopback WebSockets), exactly
as a paper account watches Kalshi.  Every order goes to paper first, then to the truth,
on the same model state.

Reported:
* taker orders (IOC at the touch or a few ticks through it): fill count and average fill
  price, paper vs truth, per order and in total (the floor: within 5 %);
* resting orders (post-only GTC at the touch or 1, 2, 4 grid steps behind it, left for
  ``--rest-steps`` more model steps): fill-rate error per queue model (conservative,
  probabilistic power/log);
* paper latency: order call -> fill event (taker), trade handed to the client -> fill
  event (maker); and the truth's REST order round trip for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import Any

import numpy as np

from core.dtypes import NO_PRICE, PRICE_MAX
from kalshi_rl.errors import KalshiApiError
from kalshi_rl.sim.grid import price_grid
from kalshi_rl.trade.paper import PaperClient, PaperConfig, QueueModel
from kalshi_rl.trade.truth import Lockstep, lockstep, market_infos

MODELS = {
    "conservative": (QueueModel.CONSERVATIVE, 2.0),
    "prob_power2": (QueueModel.PROB_POWER, 2.0),
    "prob_log": (QueueModel.PROB_LOG, 1.0),
}


def make(model: QueueModel, power: float) -> Any:
    def build(books: Any, infos: Any) -> PaperClient:
        cfg = PaperConfig(start_cash=10**10, queue_model=model, queue_power=power)
        return PaperClient(books, cfg, markets=infos)

    return build


def grid_step(grid: np.ndarray, price: int, k: int) -> int:
    """The grid price ``k`` steps above (k > 0) or below ``price`` (clamped to the grid)."""
    i = int(np.searchsorted(grid, price))
    i = min(max(i + k, 0), grid.shape[0] - 1)
    return int(grid[i])


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


class Latency:
    """Wall time from an order call (or a trade hand-over) to the fill event."""

    def __init__(self, client: PaperClient) -> None:
        self.t0 = 0
        self.armed = False
        self.samples: list[float] = []
        client.subscribe(self._on)

    def arm(self) -> None:
        self.t0 = time.perf_counter_ns()
        self.armed = True

    def _on(self, msg: dict[str, Any]) -> None:
        if self.armed and msg["type"] == "fill":
            self.samples.append((time.perf_counter_ns() - self.t0) / 1e3)
            self.armed = False


async def takers(ls: Lockstep, n: int, rng: random.Random) -> dict[str, Any]:
    client = ls.clients["conservative"]
    lat = Latency(client)
    rows = []
    rest_ms = []
    tickers = ls.watched.tickers
    grids = {i.ticker: price_grid(i.structure) for i in market_infos(ls.watched)}
    for k in range(n):
        ls.advance(rng.randint(5, 40))
        await ls.sync()
        t = rng.choice(tickers)
        slot = ls.books.slots[t]
        side = rng.choice(["bid", "ask"])
        yb, ya, _, _ = ls.books.best(slot)
        touch = ya if side == "bid" else yb
        if touch == NO_PRICE:
            continue
        through = rng.choice([0, 0, 1, 2, 3])
        price = grid_step(grids[t], touch, through if side == "bid" else -through)
        if not 0 < price < PRICE_MAX:
            continue
        count = rng.choice([1, 2, 5, 10, 20, 40, 80]) * 100 + rng.choice([0, 0, 50])
        order = {"ticker": t, "client_order_id": f"tk{k}", "side": side,
                 "count": f"{count // 100}.{count % 100:02d}", "price": f"0.{price:03d}0",
                 "time_in_force": "immediate_or_cancel"}  # fmt: skip
        lat.arm()
        paper = client.create_order_now(order)
        lat.armed = False
        others = [c.create_order_now({**order}) for name, c in ls.clients.items()
                  if name != "conservative"]  # fmt: skip
        t0 = time.perf_counter()
        truth = await ls.truth_order(t, side, count, price, "immediate_or_cancel")
        rest_ms.append((time.perf_counter() - t0) * 1e3)
        if isinstance(truth, KalshiApiError):
            continue
        pf = round(float(paper["fill_count"]) * 100)
        pp = float(paper["average_fill_price"]) * 10_000 if pf else 0.0
        tf = truth.fill_count
        tp = float(truth.average_fill_price or 0)
        same = all(o["fill_count"] == paper["fill_count"] for o in others)
        rows.append((count, pf, pp, tf, tp, same))
    filled = [r for r in rows if r[3] > 0 or r[1] > 0]
    count_err = [abs(r[1] - r[3]) / max(r[3], 1) for r in filled]
    price_err = [abs(r[2] - r[4]) / r[4] for r in filled if r[1] and r[3]]
    pv = sum(r[1] * r[2] for r in rows)
    tv = sum(r[3] * r[4] for r in rows)
    pn = sum(r[1] for r in rows)
    tn = sum(r[3] for r in rows)
    return {
        "orders": len(rows),
        "orders_with_fills": len(filled),
        "count_within_5pct": sum(e <= 0.05 for e in count_err) / max(len(count_err), 1),
        "price_within_5pct": sum(e <= 0.05 for e in price_err) / max(len(price_err), 1),
        "count_err_mean": statistics.fmean(count_err) if count_err else 0.0,
        "price_err_mean": statistics.fmean(price_err) if price_err else 0.0,
        "total_fill_paper": pn / 100,
        "total_fill_truth": tn / 100,
        "total_count_err": abs(pn - tn) / max(tn, 1),
        "vwap_paper": pv / max(pn, 1) / 10_000,
        "vwap_truth": tv / max(tn, 1) / 10_000,
        "vwap_err": abs(pv / max(pn, 1) - tv / max(tn, 1)) / max(tv / max(tn, 1), 1e-9),
        "queue_models_agree_on_takers": all(r[5] for r in rows),
        "paper_order_to_fill_us_p50": pct(lat.samples, 50),
        "paper_order_to_fill_us_p99": pct(lat.samples, 99),
        "truth_rest_roundtrip_ms_p50": pct(rest_ms, 50),
        "truth_rest_roundtrip_ms_p99": pct(rest_ms, 99),
    }


async def resting(ls: Lockstep, n: int, rest_steps: int, rng: random.Random) -> dict[str, Any]:
    tickers = ls.watched.tickers
    grids = {i.ticker: price_grid(i.structure) for i in market_infos(ls.watched)}
    placed: list[tuple[int, str, dict[str, str]]] = []  # (count, truth id, paper ids)
    for k in range(n):
        ls.advance(rng.randint(2, 6))
        await ls.sync()
        t = rng.choice(tickers)
        slot = ls.books.slots[t]
        side = rng.choice(["bid", "ask"])
        yb, ya, _, _ = ls.books.best(slot)
        touch = yb if side == "bid" else ya
        if touch == NO_PRICE:
            continue
        behind = rng.choice([0, 1, 2, 4])
        price = grid_step(grids[t], touch, -behind if side == "bid" else behind)
        count = rng.choice([2, 5, 10, 20]) * 100
        order = {"ticker": t, "client_order_id": f"rs{k}", "side": side,
                 "count": f"{count // 100}.00", "price": f"0.{price:03d}0",
                 "time_in_force": "good_till_canceled", "post_only": True}  # fmt: skip
        ids = {}
        try:
            for name, c in ls.clients.items():
                ids[name] = c.create_order_now(order)["order_id"]
        except KalshiApiError:
            continue  # post only cross on paper's view: skip the order everywhere
        try:
            truth = await ls.trader.create_order(
                t, side, count=count, price=price, time_in_force="good_till_canceled",
                post_only=True,
            )  # fmt: skip
        except KalshiApiError:  # the truth book still shows our earlier orders' impact
            for name, c in ls.clients.items():
                c.cancel_order_now(ids[name])
            continue
        placed.append((count, truth.order_id, ids))
    maker_lat: list[float] = []
    for _ in range(rest_steps // 10):
        ls.advance(10)
        await ls.sync(pump=False)
        t0 = time.perf_counter_ns()
        n_fills = ls.tee.pump()
        if n_fills:
            maker_lat.append((time.perf_counter_ns() - t0) / 1e3 / n_fills)
    out: dict[str, Any] = {"orders": len(placed)}
    truth_filled = []
    for _count, tid, _ in placed:
        truth_filled.append((await ls.trader.get_order(tid)).fill_count)
    tn = sum(truth_filled)
    out["truth_fill_rate"] = tn / max(sum(c for c, _, _ in placed), 1)
    for name, c in ls.clients.items():
        pf = [round(float(c.get_order(ids[name])["order"]["fill_count_fp"]) * 100)
              for _, _, ids in placed]  # fmt: skip
        errs = [
            abs(p - t) / cnt for p, t, (cnt, _, _) in zip(pf, truth_filled, placed, strict=True)
        ]
        out[name] = {
            "fill_rate": sum(pf) / max(sum(cnt for cnt, _, _ in placed), 1),
            "fill_rate_err_mean": statistics.fmean(errs) if errs else 0.0,
            "total_fill_vs_truth": sum(pf) / max(tn, 1),
            "orders_over_truth": sum(p > t for p, t in zip(pf, truth_filled, strict=True)),
        }
    out["maker_fill_hook_us_per_fill_p50"] = pct(maker_lat, 50)
    out["maker_fill_hook_us_per_fill_p99"] = pct(maker_lat, 99)
    return out


async def main(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    clients = {name: make(*spec) for name, spec in MODELS.items()}
    async with lockstep(clients, n_markets=args.markets, seed=args.seed) as ls:
        tk = await takers(ls, args.takers, rng)
        rs = await resting(ls, args.resting, args.rest_steps, rng)
    print("== taker orders: paper vs truth ==")
    for k, v in tk.items():
        print(f"  {k:32s} {v:.4f}" if isinstance(v, float) else f"  {k:32s} {v}")
    print("== resting orders: fill rate per queue model ==")
    for k, v in rs.items():
        if isinstance(v, dict):
            print(f"  {k}: " + ", ".join(f"{a}={b:.4f}" if isinstance(b, float) else f"{a}={b}"
                                         for a, b in v.items()))  # fmt: skip
        else:
            print(f"  {k:32s} {v:.4f}" if isinstance(v, float) else f"  {k:32s} {v}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--takers", type=int, default=200)
    ap.add_argument("--resting", type=int, default=150)
    ap.add_argument("--rest-steps", type=int, default=60)
    ap.add_argument("--markets", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    asyncio.run(main(ap.parse_args()))
