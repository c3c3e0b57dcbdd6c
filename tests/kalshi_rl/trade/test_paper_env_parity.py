"""The training env and the paper client fill the same order on the same book identically.

Both call the core engine (``core.orders.action_to_order``, ``core.matching.taker_match``,
``core.fees``, ``core.account``); this checks the wiring around it: the env steps an
action on a dataset row, the paper client gets the order the env's rule makes from that
action, on a BookSet holding that row's depth, and the accounts must agree to the unit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st

from core.dtypes import (
    ACT_BUY_NO,
    ACT_BUY_YES,
    ACT_HOLD,
    ACT_SELL_NO,
    ACT_SELL_YES,
    NO_PRICE,
    REJ_NONE,
    SIDE_NO,
    SIDE_YES,
    TIF_IOC,
)
from core.liquidity import new_liquidity
from core.orders import action_to_order
from kalshi_rl.env.config import EnvConfig, SegmentOrder
from kalshi_rl.env.synthetic import random_walk_dataset
from kalshi_rl.env.trading import KalshiTradingEnv
from kalshi_rl.trade.paper import MarketInfo

MONEY = 10_000


def load_row(ph: Any, books: Any, slot: int, px: np.ndarray, qty: np.ndarray) -> None:
    """A BookSet snapshot holding one dataset row's top-K depth."""
    levels = {s: [(int(p), int(q)) for p, q in zip(px[s], qty[s], strict=True)
                  if p != NO_PRICE and q > 0] for s in (SIDE_YES, SIDE_NO)}  # fmt: skip
    ph.snapshot(books, slot, levels[SIDE_YES], levels[SIDE_NO])


@given(
    seed=st.integers(0, 10_000),
    actions=st.lists(
        st.sampled_from([ACT_BUY_YES, ACT_BUY_NO, ACT_SELL_YES, ACT_SELL_NO, ACT_HOLD]),
        min_size=1, max_size=6,
    ),
    size=st.one_of(st.integers(1, 6000), st.integers(6000, 400_000)),
    slip=st.sampled_from([0, 10, 20, 50]),
)  # fmt: skip
def test_env_and_paper_fill_alike(
    ph: Any, seed: int, actions: list[int], size: int, slip: int
) -> None:
    ds = random_walk_dataset(1, 24, seed=seed)
    cfg = EnvConfig(
        order_size=size, slippage_ticks=slip, max_position=10**9, start_cash=10**6 * MONEY,
        entry_latency_ms=(0, 0), ack_latency_ms=(0, 0), segment_order=SegmentOrder.SEQUENTIAL,
    )  # fmt: skip
    env = KalshiTradingEnv(ds, cfg)
    env.reset(seed=0)
    b = env._batch
    paper, books, _ = ph.make_client(MarketInfo("T"), cash_dollars=10**6)
    slot = books.slots["T"]
    liq = new_liquidity(1)  # the paper's view of what the env's rule sees
    for a in actions:
        t = int(b.state[0]["t"])
        px, qty = ds.depth_px[t], ds.depth_qty[t]
        load_row(ph, books, slot, px, qty)
        paper.on_book_update(np.array([slot]))
        liq[0] = paper._liq[slot]
        side, act, limit, count, rej = action_to_order(
            a, int(paper.positions[slot]["position"]), size, 10**9, slip, px, qty, liq
        )
        env.step(a)
        if a != ACT_HOLD and rej == REJ_NONE and count > 0:
            # the env's limit is the touch moved by ``slip`` ticks, maybe off the cent grid
            paper.submit("T", side, act, limit, count, tif=TIF_IOC, snap=True)
        mine = paper.positions[slot]
        env_pos = b.pos[0]
        for field in ("position", "cost_basis", "realized_pnl", "fees_paid", "n_trades"):
            assert int(mine[field]) == int(env_pos[field]), field
        assert paper.cash == int(env_pos["cash"])
        if b.terminated[0]:
            break
    event(f"fills: {min(int(paper.positions[slot]['n_trades']), 3)}")
    per_order = np.unique(paper.fills_array()["order_id"], return_counts=True)[1]
    event(f"multi-level: {bool(per_order.max(initial=0) > 1)}")
