"""The paper client's vocabulary: settings, market info, rings, V2 request fields, errors.

Split out of ``kalshi_rl.trade.paper`` (which re-exports every name): what a caller
configures (``PaperConfig``, ``LatencyModel``, ``QueueModel``), tells it about markets
(``MarketInfo``, ``MarketStatus``), hands it for persistence (``PaperRings``), the V2 order
fields it accepts and the Kalshi error codes it answers with (``ErrorCode``), and the
rolling-window state of one order group (``_Group``).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from core.dtypes import (
    COUNT_SCALE,
    MEMBER_CENT,
    MEMBER_DIRECT,
    MONEY_SCALE,
    PAPER_FILL_DTYPE,
    PAPER_ORDER_EVENT_DTYPE,
    PAPER_SETTLEMENT_DTYPE,
    QUEUE_CONSERVATIVE,
    QUEUE_PROB_LOG,
    QUEUE_PROB_POWER,
)
from core.latency import latency_model
from core.ring import Ring
from kalshi_rl.errors import KalshiApiError
from kalshi_rl.sim.grid import PriceLevelStructure

ORDER_GROUP_WINDOW_NS = 15 * 1_000_000_000  # Kalshi: contracts limit over a rolling 15 s
MAX_COUNT = 1_000_000_000 * COUNT_SCALE  # a sanity bound on one order (count units)
MAX_BATCH = 20  # Kalshi's batch endpoints take at most 20 orders per call


class ErrorCode(enum.StrEnum):
    """Kalshi error codes the paper client returns (KalshiApiError.code)."""

    MISSING_PARAMETERS = "missing_parameters"
    INVALID_PARAMETERS = "invalid_parameters"
    INVALID_ORDER = "invalid_order"
    INVALID_PRICE = "invalid_price"
    INVALID_COUNT = "invalid_count"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    MARKET_CLOSED = "market_closed"
    MARKET_INACTIVE = "market_inactive"
    ORDER_ALREADY_EXISTS = "order_already_exists"
    NOT_FOUND = "not_found"
    ORDER_GROUP_TRIGGERED = "order_group_triggered"
    BOOK_UNAVAILABLE = "book_unavailable"


def _err(status: int, code: ErrorCode, message: str, details: str = "") -> KalshiApiError:
    return KalshiApiError(status, code.value, message, details)


class QueueModel(enum.IntEnum):
    """Queue-position models of resting paper orders (core.paper_book)."""

    CONSERVATIVE = QUEUE_CONSERVATIVE
    PROB_POWER = QUEUE_PROB_POWER
    PROB_LOG = QUEUE_PROB_LOG


class MarketStatus(enum.StrEnum):
    """Kalshi market states the client distinguishes (kalshi-protocol.md §5)."""

    ACTIVE = "active"
    INACTIVE = "inactive"  # paused: no new orders; cancel_order_on_pause orders canceled
    CLOSED = "closed"  # no order operations at all; resting orders canceled
    DETERMINED = "determined"


@dataclass(frozen=True)
class LatencyModel:
    """Order-entry and acknowledgement delays (``core.latency``: uniform in [min, max] ms).

    Attributes:
        entry_ms: (min, max) ms from the call to the order reaching the exchange.
        ack_ms: (min, max) ms from the exchange's answer to the call returning.
        seed: seed of the generator of the uniforms (reproducible runs).
    """

    entry_ms: tuple[int, int] = (0, 0)
    ack_ms: tuple[int, int] = (0, 0)
    seed: int = 0

    def record(self) -> np.ndarray:
        """The LATENCY_DTYPE [1] record (validated by ``core.latency.latency_model``)."""
        (e0, e1), (a0, a1) = self.entry_ms, self.ack_ms
        return latency_model((int(e0), int(e1)), (int(a0), int(a1)))

    def __post_init__(self) -> None:
        self.record()


@dataclass(frozen=True)
class PaperConfig:
    """Settings of one paper account.

    Attributes:
        start_cash: money units ($0.0001) the account starts with.
        queue_model: how resting orders move up their queue.
        queue_power: exponent n of QueueModel.PROB_POWER's power function.
        latency: entry/ack delays.
        precision: member balance precision, money (MEMBER_CENT, the default, or
            MEMBER_DIRECT): every fill's balance change is floored to it (core.fees).
        user_id: ``user_id`` written into order and position messages.
        order_capacity: initial size of the order array (grows by doubling).
    """

    start_cash: int = 1_000 * MONEY_SCALE
    queue_model: QueueModel = QueueModel.CONSERVATIVE
    queue_power: float = 2.0
    latency: LatencyModel = field(default_factory=LatencyModel)
    user_id: str = "paper"
    order_capacity: int = 1024
    precision: int = MEMBER_CENT

    def __post_init__(self) -> None:
        if self.start_cash < 0:
            raise ValueError(f"start_cash must be >= 0, got {self.start_cash}")
        if self.queue_power <= 0:
            raise ValueError(f"queue_power must be > 0, got {self.queue_power}")
        if self.precision not in (MEMBER_CENT, MEMBER_DIRECT):
            raise ValueError(
                f"precision must be MEMBER_CENT or MEMBER_DIRECT, got {self.precision}"
            )

    def to_json(self) -> dict[str, Any]:
        """The config as stored in paper_accounts.config."""
        return {
            "start_cash": self.start_cash,
            "queue_model": self.queue_model.name.lower(),
            "queue_power": self.queue_power,
            "latency": {
                "entry_ms": list(self.latency.entry_ms),
                "ack_ms": list(self.latency.ack_ms),
                "seed": self.latency.seed,
            },
            "user_id": self.user_id,
            "precision": self.precision,
        }


class MarketInfo(NamedTuple):
    """What the client must know about a market to validate orders on it."""

    ticker: str
    structure: PriceLevelStructure = PriceLevelStructure.LINEAR_CENT
    status: MarketStatus = MarketStatus.ACTIVE
    maker_fees: bool = False  # the series charges maker fees


class PaperRings:
    """The rings the writer drains into paper_orders / paper_fills / paper_settlements."""

    def __init__(self, capacity: int = 1 << 12) -> None:
        self.orders = Ring(PAPER_ORDER_EVENT_DTYPE, capacity)
        self.fills = Ring(PAPER_FILL_DTYPE, capacity)
        self.settlements = Ring(PAPER_SETTLEMENT_DTYPE, max(capacity // 16, 16))

    def by_table(self) -> dict[str, Ring]:
        """Table name -> ring, as ``kalshi_rl.store.writer.Writer`` takes them."""
        return {
            "paper_orders": self.orders,
            "paper_fills": self.fills,
            "paper_settlements": self.settlements,
        }


@dataclass
class _Group:
    """An order group: contracts filled in the last 15 s may not exceed ``limit``."""

    gid: str
    limit: int  # count units
    window: deque[tuple[int, int]] = field(default_factory=deque)  # (ts ns, count)
    filled: int = 0  # sum of counts in window
    triggered: bool = False
    deleted: bool = False


_V2_FIELDS = frozenset(
    {
        "ticker",
        "client_order_id",
        "side",
        "count",
        "price",
        "time_in_force",
        "self_trade_prevention_type",
        "post_only",
        "reduce_only",
        "order_group_id",
        "cancel_order_on_pause",
        "expiration_time",
        "subaccount",
    }
)
_V2_REQUIRED = ("ticker", "client_order_id", "side", "count", "price", "time_in_force")
