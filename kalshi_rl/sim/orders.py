"""Order vocabulary of the local exchange: orders, maker lots, order groups, fills, rejections.

Plain data shared by the matching engine (kalshi_rl.sim.matching), the model-event router
(kalshi_rl.sim.events), the portfolio API and the private feed.  ``Order.side`` is the
book side: SIDE_YES = bid (buy YES), SIDE_NO = ask (buy NO); prices are on that side's
scale (a YES ask at p is a NO bid at 1 - p).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from core.dtypes import SIDE_NO, SIDE_YES

TIF_GTC = "good_till_canceled"
TIF_IOC = "immediate_or_cancel"
TIF_FOK = "fill_or_kill"
STP_TAKER = "taker_at_cross"
STP_MAKER = "maker"

RESTING = "resting"
CANCELED = "canceled"
EXECUTED = "executed"


def other(side: int) -> int:
    """The other book side."""
    return SIDE_NO if side == SIDE_YES else SIDE_YES


class MakerLot:
    """Maker quantity that joined a level's queue at one time."""

    __slots__ = ("qty",)

    def __init__(self, qty: int) -> None:
        self.qty = qty


@dataclass(slots=True, eq=False)
class Order:
    """One user order.  ``side`` is the book side: SIDE_YES = bid (buy YES), SIDE_NO =
    ask (buy NO); ``price`` is on that side's scale (a YES ask at p is a NO bid at 1-p)."""

    order_id: str
    user: str
    client_order_id: str
    m: int
    side: int
    price: int
    initial: int
    tif: str = TIF_GTC
    post_only: bool = False
    reduce_only: bool = False
    stp: str = STP_TAKER
    created_ms: int = 0
    order_group_id: str | None = None
    cancel_on_pause: bool = False
    expiration_ms: int | None = None
    remaining: int = 0
    filled: int = 0
    status: str = RESTING
    updated_ms: int = 0
    taker_fill_count: int = 0
    maker_fill_count: int = 0
    taker_cost_e: int = 0
    maker_cost_e: int = 0
    taker_fees: int = 0
    maker_fees: int = 0
    acc_e: int = 0  # rounding accumulator (exact units)
    claim: int = 0  # count that closes an opposite holding (needs no collateral)
    reserve: int = 0  # money held while resting
    resting: bool = False
    legacy: tuple[str, str] | None = None  # (side, action) when created by the legacy API
    ticker: str = ""  # set on submit: a rolling market's slot may later hold another ticker

    @property
    def qty(self) -> int:
        """Queue quantity (remaining)."""
        return self.remaining


Entry = MakerLot | Order


GROUP_WINDOW_MS = 15_000  # Kalshi's rolling window of an order group's contracts limit


@dataclass(slots=True, eq=False)
class OrderGroup:
    """Kalshi's order group: when the contracts filled by its orders over a rolling 15 s
    exceed ``limit``, it triggers: its resting orders are cancelled and new orders in it
    are refused until a reset."""

    group_id: str
    user: str
    limit: int  # count units
    window: collections.deque[tuple[int, int]] = dataclasses.field(
        default_factory=collections.deque
    )  # (ts_ms, count) of recent fills
    triggered: bool = False

    def volume(self, now_ms: int) -> int:
        """Contracts filled in the window ending at ``now_ms``."""
        while self.window and self.window[0][0] <= now_ms - GROUP_WINDOW_MS:
            self.window.popleft()
        return sum(c for _, c in self.window)


class Fill(NamedTuple):
    """One fill of one order."""

    fill_id: str
    trade_id: str
    order: Order
    qty: int  # count units
    price: int  # on the order's side
    is_taker: bool
    fee: int  # trade fee, money
    cash_change: int
    ts_ms: int


class Listener(NamedTuple):
    """Where private events go (the server turns them into WS messages)."""

    on_order: Callable[[Order], None]
    on_fill: Callable[[Fill], None]
    on_position: Callable[[str, int], None]


class Rejection(Exception):
    """An order request the exchange refuses (status, Kalshi error code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
