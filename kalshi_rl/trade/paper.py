"""The paper trading client: Kalshi's portfolio API over the live shared books.

``PaperClient`` answers the calls a live Kalshi client would make (V2 order fields, REST
response shapes, Kalshi's error codes) but fills orders against the books the feed keeps
(``core.book.BookSet``, read in place) through the core engine's kernels
(``core.paper_book``, which books fills with ``core.fills``).  State lives in core arrays:
orders (PAPER_ORDER_DTYPE), one POSITION_DTYPE per book slot and the liquidity-consumption
ladders.  This module only validates, formats, publishes events and hands records to rings.

Errors: every refused request raises ``KalshiApiError(status, code, message, details)``
with Kalshi's HTTP status and code (``ErrorCode``); batch calls never raise for one bad
item, they report it in the item's ``error`` field as Kalshi's batch responses do.  No
input crashes the client: a malformed field is a 400, an unknown id a 404.

Hot path: the live node calls ``on_book_update(slots)`` after the feed applied deltas and
``on_trades(recs)`` for public trades.  Both return at once when nothing rests, make one
kernel call otherwise, and allocate only when fills happened.  Subscribers get Kalshi's
private-channel messages (``fill``, ``user_order``, ``market_position``) synchronously from
a callback that must not block; ``subscribe_queue`` gives a bounded asyncio queue instead
(a full queue drops the message and counts it).

Latency: a ``LatencyModel`` delays an order's arrival at the (simulated) exchange by the
entry latency and its acknowledgement by the ack latency (the coroutines sleep; matching
happens against the book as it is when the order arrives).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numba import njit
from numba.core import types
from numba.experimental import structref

from core.book import BookSet
from core.dtypes import (
    COID_MAX,
    COUNT_SCALE,
    FEE_DTYPE,
    FILL_DTYPE,
    LIQUIDITY_DTYPE,
    N_PRICES,
    N_SIDES,
    NO_PRICE,
    ORD_CANCELED,
    ORD_EXECUTED,
    ORD_RESTING,
    ORDER_BUY,
    ORDER_DTYPE,
    ORDER_SELL,
    PAPER_FILL_DTYPE,
    PAPER_ORDER_EVENT_DTYPE,
    PAPER_ORDER_EXTRA_DTYPE,
    PAPER_SETTLEMENT_DTYPE,
    POE_AMENDED,
    POE_CANCELED,
    POE_CREATED,
    POE_DECREASED,
    POE_FILLED,
    POSITION_DTYPE,
    PRICE_MAX,
    REJ_INSUFFICIENT_BALANCE,
    REJ_NONE,
    REJ_POST_ONLY_CROSS,
    REJ_REDUCE_ONLY,
    REJECT_NAMES,
    RESULT_NO,
    RESULT_YES,
    SIDE_NO,
    SIDE_YES,
    STP_MAKER,
    STP_TAKER_AT_CROSS,
    TIF_GTC,
    TIF_IOC,
    TRADE_DTYPE,
)
from core.fees import fee_schedule
from core.latency import latency_sample
from core.orders import collateral_need
from core.paper_book import (
    CTL_LEN,
    CTL_N_ACTIVE,
    CTL_WATCH,
    TAKER_BAD_COUNT,
    TAKER_I,
    TAKER_NO_BOOK,
    TAKER_OFF_GRID,
    VIEW_LEVELS,
    account_cash,
    account_reserved,
    effective_position,
    paper_cancel,
    paper_decrease,
    paper_init_order,
    paper_on_book,
    paper_on_trades,
    paper_order_record,
    paper_record_fills,
    paper_replay_fills,
    paper_settle,
    paper_submit,
    paper_submit_on,
    paper_taker_submit,
)
from core.queue import queue_join, queue_model, rest_level
from core.ring import Ring
from kalshi_rl.errors import KalshiApiError, LiveTradingRefused, StoreError
from kalshi_rl.kalshi.protocol import DecodeError, format_count, parse_count, parse_price
from kalshi_rl.sim.grid import PriceLevelStructure, parse_structure, price_grid
from kalshi_rl.trade import shapes
from kalshi_rl.trade.fastcall import FastCall
from kalshi_rl.trade.paper_store import SavedAccount
from kalshi_rl.trade.paper_types import (
    _V2_FIELDS,
    _V2_REQUIRED,
    MAX_BATCH,
    MAX_COUNT,
    ORDER_GROUP_WINDOW_NS,
    ErrorCode,
    LatencyModel,
    MarketInfo,
    MarketStatus,
    PaperConfig,
    PaperRings,
    QueueModel,
    _err,
    _Group,
)

log = logging.getLogger(__name__)


__all__ = [
    "MAX_BATCH",
    "MAX_COUNT",
    "ORDER_GROUP_WINDOW_NS",
    "ErrorCode",
    "LatencyModel",
    "MarketInfo",
    "MarketStatus",
    "PaperClient",
    "PaperConfig",
    "PaperRings",
    "QueueModel",
    "Subscription",
    "create_trading_client",
]


_ON_BOOK_FIELDS = (
    "orders", "extra", "active", "ctl", "pos", "qty", "best", "liq", "fees", "qm",
    "start_cash", "dirty", "px", "vq", "fill_out",
)  # fmt: skip


@structref.register
class OnBookCtxType(types.StructRef):
    """Numba type of ``OnBookCtx``: ``paper_on_book``'s arrays but the changed slots."""

    def preprocess_fields(self, fields: Any) -> Any:
        return tuple((name, types.unliteral(t)) for name, t in fields)


class OnBookCtx(structref.StructRefProxy):
    """``PaperClient.on_book_update``'s kernel state (``_ON_BOOK_FIELDS``)."""


structref.define_proxy(OnBookCtx, OnBookCtxType, list(_ON_BOOK_FIELDS))


@njit(cache=True)
def new_on_book_ctx(  # noqa: PLR0917 -- the fields, positionally (_ON_BOOK_FIELDS)
    orders, extra, active, ctl, pos, qty, best, liq, fees, qm, start_cash, dirty, px, vq,
    fill_out,
):  # fmt: skip
    """An ``OnBookCtx`` (compiled once and cached)."""
    return OnBookCtx(
        orders, extra, active, ctl, pos, qty, best, liq, fees, qm, start_cash, dirty, px, vq,
        fill_out,
    )  # fmt: skip


@njit(cache=True)
def paper_on_book_ctx(c, slots, ts_ms):
    """``core.paper_book.paper_on_book`` over an ``OnBookCtx``: 2 x fills + CTL_WATCH."""
    n = paper_on_book(
        c.orders, c.extra, c.active, c.ctl, c.pos, c.qty, c.best, c.liq, c.fees, c.qm,
        c.start_cash, slots, c.dirty, ts_ms, c.px, c.vq, c.fill_out,
    )  # fmt: skip
    return 2 * n + c.ctl[CTL_WATCH]


def _room(ring: Ring, n: int) -> bool:
    """True when a kernel may push ``n`` records into ``ring`` (room, no overflow backlog)."""
    return ring.overflow_pending == 0 and ring.capacity - ring.occupancy >= n


class Subscription:
    """Handle returned by ``subscribe``; ``close()`` unsubscribes."""

    def __init__(self, client: PaperClient, cb: Callable[[dict[str, Any]], None]) -> None:
        self._client = client
        self.callback = cb

    def close(self) -> None:
        """Stop receiving messages."""
        self._client._unsubscribe(self)


class PaperClient:
    """A paper trading account with Kalshi's portfolio API (see the module docstring).

    Args:
        books: the live BookSet (read in place; never written).
        config: account settings.
        markets: markets the account may trade (more via ``add_market``).
        rings: where order/fill/settlement records go for persistence (None: kept in
            memory only).
        account_id: the paper_accounts id (used in the deterministic UUIDs).
        clock: nanosecond wall clock (injected by tests and the bench).
    """

    def __init__(
        self,
        books: BookSet,
        config: PaperConfig | None = None,
        *,
        markets: Iterable[MarketInfo] = (),
        rings: PaperRings | None = None,
        account_id: int = 0,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.books = books
        self.config = config or PaperConfig()
        self.rings = rings
        self.account_id = int(account_id)
        self._clock = clock
        self._rng = random.Random(self.config.latency.seed)
        cap = max(int(self.config.order_capacity), 16)
        self._orders = np.zeros(cap, dtype=ORDER_DTYPE)
        self._extra = np.zeros(cap, dtype=PAPER_ORDER_EXTRA_DTYPE)
        self._active = np.zeros(cap, dtype=np.int64)
        self._ctl = np.zeros(CTL_LEN, dtype=np.int64)
        self._n = 0
        # order ids are derived from the index (``_uuid_of``); client order ids are kept
        # only when given (None = the default ``paper-<account>-<n>``, ``_coid_of``)
        self._coid: list[str | None] = []
        self._event_out = np.zeros(1, dtype=PAPER_ORDER_EVENT_DTYPE)
        self._events2 = np.zeros(2, dtype=PAPER_ORDER_EVENT_DTYPE)
        self._coid_scratch = np.zeros(COID_MAX + 24, dtype=np.uint8)
        self._set_account_prefixes()
        self._by_coid: dict[str, int] = {}  # given client order ids only
        self._next_rec_id = 1
        self._groups: list[_Group] = []
        self._group_by_id: dict[str, int] = {}
        self._markets: dict[int, MarketInfo] = {}
        self._grids: dict[PriceLevelStructure, np.ndarray] = {}
        self._cap_m = 0
        self._pos = np.zeros(0, dtype=POSITION_DTYPE)
        self._liq = np.zeros(0, dtype=LIQUIDITY_DTYPE)
        self._fees = np.zeros(0, dtype=FEE_DTYPE)
        self._dirty = np.zeros(0, dtype=np.uint8)
        self._qm = queue_model(int(self.config.queue_model), float(self.config.queue_power))
        self._lat = self.config.latency.record()
        self._lat_on = bool(self._lat[0]["entry_max_ms"] or self._lat[0]["ack_max_ms"])
        self._px = np.zeros((N_SIDES, VIEW_LEVELS), dtype=np.int16)
        self._vq = np.zeros((N_SIDES, VIEW_LEVELS), dtype=np.int64)
        self._fill_out = np.zeros(N_PRICES, dtype=FILL_DTYPE)
        self._fills = np.zeros(256, dtype=PAPER_FILL_DTYPE)
        self._n_fills = 0
        # stand-ins for the rings of a client that persists nothing (the kernel's signature)
        self._no_ring = Ring(PAPER_ORDER_EVENT_DTYPE, 1)
        self._no_fill_ring = Ring(PAPER_FILL_DTYPE, 1)
        self._any_grid = np.ones(PRICE_MAX + 1, dtype=np.bool_)
        self._best_src: np.ndarray | None = None
        self._view: tuple[np.ndarray, np.ndarray] | None = None  # submit_on_view's book
        # the book listener's kernel entry and its state (one structref: unboxing the 17
        # arguments of paper_on_book cost ~1 us a call; rebuilt when an array is replaced)
        self._k_on_book = FastCall(paper_on_book_ctx, key_arg=1)  # slots: int32/int64, strided
        self._ob_ctx: Any = None
        self._ob_layout = -1  # taker_layout and books.qty it was built on
        self._ob_qty: np.ndarray | None = None
        self._best_view = np.zeros((0, N_SIDES), dtype=np.int32)
        self._settlements: list[dict[str, Any]] = []
        self._settle_recs: list[np.ndarray] = []
        # bumped whenever an array the taker kernel gets, a market's grid or the start
        # cash changes (the actor rebuilds its step context then; ``taker_layout``)
        self.taker_layout = 0
        # False while no order rests and nothing is consumed: book updates are then no-ops
        self._watch = False
        self._subs: list[Subscription] = []
        self._queues: list[asyncio.Queue[dict[str, Any]]] = []
        # counters (dashboard / tests)
        self.n_rejected = 0
        self.n_events_dropped = 0
        self.n_callback_errors = 0
        self._sync_capacity()
        for info in markets:
            self.add_market(info)

    # ================================================================== markets
    def _sync_capacity(self) -> None:
        # BookSet grows by replacing its arrays; per-slot arrays follow its capacity
        cap = self.books.capacity
        if cap == self._cap_m:
            return
        n = self._cap_m
        pos = np.zeros(cap, dtype=POSITION_DTYPE)
        pos[:n] = self._pos
        liq = np.zeros(cap, dtype=LIQUIDITY_DTYPE)
        liq[:n] = self._liq
        fees = np.zeros(cap, dtype=FEE_DTYPE)
        fees[:n] = self._fees
        fees[n:] = fee_schedule(maker_fees=False, precision=self.config.precision)[0]
        self._pos, self._liq, self._fees = pos, liq, fees
        self._pos_view = pos.view()
        self._pos_view.flags.writeable = False
        self._dirty = np.zeros(cap, dtype=np.uint8)
        self._cap_m = cap
        self.taker_layout += 1

    def add_market(self, info: MarketInfo) -> int:
        """Make ``info.ticker`` tradable (or update its info); returns its book slot."""
        if not isinstance(info.ticker, str) or not info.ticker:
            raise ValueError(f"market ticker must be a non-empty str, got {info.ticker!r}")
        structure = parse_structure(str(info.structure))
        slot = self.books.slot(info.ticker)
        self._sync_capacity()
        self._markets[slot] = info._replace(structure=structure, status=MarketStatus(info.status))
        if structure not in self._grids:
            grid = np.zeros(PRICE_MAX + 1, dtype=np.bool_)
            grid[price_grid(structure)] = True
            self._grids[structure] = grid
        self.taker_layout += 1
        self._fees[slot] = fee_schedule(
            maker_fees=bool(info.maker_fees), precision=self.config.precision
        )[0]
        return slot

    def set_market_status(self, ticker: str, status: MarketStatus | str) -> None:
        """A lifecycle change (kalshi-protocol.md section 5).

        Pausing cancels the ``cancel_order_on_pause`` orders; un-pausing cancels every
        resting order of the market (Kalshi's rule); closing or determining cancels all.
        """
        slot = self._market_slot(ticker)
        st = MarketStatus(status)
        was = self._markets[slot].status
        self._markets[slot] = self._markets[slot]._replace(status=st)
        unpaused = st == MarketStatus.ACTIVE and was == MarketStatus.INACTIVE
        if st == MarketStatus.INACTIVE:
            self._cancel_where(slot, only_on_pause=True)
        elif unpaused or st in (MarketStatus.CLOSED, MarketStatus.DETERMINED):
            self._cancel_where(slot, only_on_pause=False)

    def settle_market(self, ticker: str, result: str) -> dict[str, Any] | None:
        """Determine a market: cancel its orders, pay out its position (result yes|no).

        Returns:
            The settlement object (Kalshi's shape) when a position was held, else None.
        """
        if result not in ("yes", "no"):
            raise _err(
                400, ErrorCode.INVALID_PARAMETERS, f"result must be yes or no, got {result!r}"
            )
        slot = self._market_slot(ticker)
        canceled = self._resting_in(slot)
        self._markets[slot] = self._markets[slot]._replace(status=MarketStatus.DETERMINED)
        held = int(self._pos[slot]["position"])
        position, basis, payout = paper_settle(
            self._orders, self._extra, self._active, self._ctl, self._pos, slot, result == "yes"
        )
        now = self._clock()
        for i in canceled:
            self._order_event(i, POE_CANCELED, now)
        if held == 0 and basis == 0:
            return None
        rec = np.zeros(1, dtype=PAPER_SETTLEMENT_DTYPE)
        r = rec[0]
        r["rec_id"] = self._rec_id()
        r["ts"] = now
        r["position"] = position
        r["cost_basis"] = basis
        r["payout"] = payout
        r["market"] = slot
        r["result"] = RESULT_YES if result == "yes" else RESULT_NO
        if self.rings is not None:
            self.rings.settlements.push_batch(rec)
        out = self._settlement_json(r)
        self._settlements.append(out)
        self._settle_recs.append(rec)
        self._publish(shapes.position_msg(ticker, self._pos[slot], self.config.user_id))
        return out

    def _settlement_json(self, r: np.void) -> dict[str, Any]:
        position = int(r["position"])
        yes = int(r["result"]) == RESULT_YES
        return {
            "ticker": self.books.ticker_of(int(r["market"])),
            "market_result": "yes" if yes else "no",
            "yes_count_fp": format_count(max(position, 0)),
            "no_count_fp": format_count(max(-position, 0)),
            "yes_total_cost_dollars": shapes.money_dollars(
                int(r["cost_basis"]) if position > 0 else 0
            ),
            "no_total_cost_dollars": shapes.money_dollars(
                int(r["cost_basis"]) if position < 0 else 0
            ),
            "revenue": shapes.money_cents(int(r["payout"])),
            "revenue_dollars": shapes.money_dollars(int(r["payout"])),
            "fee_cost": "0.0000",
            "settled_time": shapes.iso_ns(int(r["ts"])),
        }

    def _market_slot(self, ticker: Any) -> int:
        if not isinstance(ticker, str) or not ticker:
            raise _err(
                400, ErrorCode.INVALID_PARAMETERS, f"ticker must be a string, got {ticker!r}"
            )
        slot = self.books.slots.get(ticker)
        if slot is None or slot not in self._markets:
            raise _err(404, ErrorCode.NOT_FOUND, f"market {ticker} not found")
        return slot

    def _tradable(self, slot: int, *, cancel: bool = False) -> None:
        st = self._markets[slot].status
        ticker = self._markets[slot].ticker
        if st in (MarketStatus.CLOSED, MarketStatus.DETERMINED):
            raise _err(400, ErrorCode.MARKET_CLOSED, f"market {ticker} is {st.value}")
        if st == MarketStatus.INACTIVE and not cancel:
            raise _err(400, ErrorCode.MARKET_INACTIVE, f"market {ticker} is paused")

    # ================================================================== ids / records
    def _rec_id(self) -> int:
        r = self._next_rec_id
        self._next_rec_id += 1
        return r

    def _set_account_prefixes(self) -> None:
        self._uuid_prefix = shapes.paper_uuid("order", self.account_id, 0)[:-12]
        self._coid_prefix = f"paper-{self.account_id}-"
        self._coid_prefix_bytes = np.frombuffer(self._coid_prefix.encode(), dtype=np.uint8)

    def _uuid_of(self, i: int) -> str:
        """Order ``i``'s id (``shapes.paper_uuid("order", account, i + 1)``)."""
        return self._uuid_prefix + f"{i + 1:012x}"

    def _coid_of(self, i: int) -> str:
        c = self._coid[i]
        return c if c is not None else f"{self._coid_prefix}{i + 1}"

    def _coid_taken(self, coid: str) -> bool:
        """True when an order already has client order id ``coid`` (given or default)."""
        if coid in self._by_coid:
            return True
        p = self._coid_prefix
        if coid.startswith(p) and coid[len(p) :].isdigit() and coid[len(p)] != "0":
            k = int(coid[len(p) :]) - 1
            return 0 <= k < self._n and self._coid[k] is None
        return False

    def _order_index(self, order_id: Any) -> int:
        p = self._uuid_prefix
        if isinstance(order_id, str) and len(order_id) == len(p) + 12 and order_id.startswith(p):
            try:
                i = int(order_id[len(p) :], 16) - 1
            except ValueError:
                i = -1
            if 0 <= i < self._n and order_id == self._uuid_of(i):
                return i
        raise _err(404, ErrorCode.NOT_FOUND, f"order {order_id!r} not found")

    def _grow_orders(self) -> None:
        cap = self._orders.shape[0] * 2
        orders = np.zeros(cap, dtype=ORDER_DTYPE)
        orders[: self._n] = self._orders[: self._n]
        extra = np.zeros(cap, dtype=PAPER_ORDER_EXTRA_DTYPE)
        extra[: self._n] = self._extra[: self._n]
        active = np.zeros(cap, dtype=np.int64)
        active[: self._active.shape[0]] = self._active
        self._orders, self._extra, self._active = orders, extra, active
        self.taker_layout += 1

    def _new_order(self, coid: str | None) -> int:
        """Register order index ``self._n`` (client id; None = the default one)."""
        if self._n >= self._orders.shape[0]:
            self._grow_orders()
        i = self._n
        self._n += 1
        if coid is not None and coid == f"{self._coid_prefix}{i + 1}":
            coid = None  # the default id given explicitly: kept the same way
        self._coid.append(coid)
        if coid is not None:
            self._by_coid[coid] = i
        return i

    def _order_event(self, i: int, event: int, now: int) -> None:
        if self.rings is not None:
            coid = np.frombuffer(self._coid_of(i).encode(), dtype=np.uint8)
            paper_order_record(self._orders, self._extra, i, self._event_out, self._rec_id(),
                               now, event, coid)  # fmt: skip
            self.rings.orders.push_batch(self._event_out)
        else:
            self._extra[i]["updated_ns"] = now
        if self._subs or self._queues:
            self._publish(shapes.user_order_msg(self._order_json(i)))

    def _order_json(self, i: int) -> dict[str, Any]:
        o = self._orders[i]
        e = self._extra[i]
        g = int(e["group"])
        return shapes.order_json(
            o,
            e,
            order_id=self._uuid_of(i),
            client_order_id=self._coid_of(i),
            ticker=self.books.ticker_of(int(o["market"])),
            user_id=self.config.user_id,
            group=self._groups[g].gid if g >= 0 else None,
        )

    # ================================================================== validation
    def _parse_new(self, req: Mapping[str, Any]) -> dict[str, Any]:
        """V2 create fields -> typed values; KalshiApiError on anything wrong."""
        if not isinstance(req, Mapping):
            raise _err(400, ErrorCode.INVALID_PARAMETERS, "an order must be an object")
        unknown = sorted(set(req) - _V2_FIELDS)
        if unknown:
            raise _err(400, ErrorCode.INVALID_PARAMETERS, f"unknown order fields {unknown}")
        missing = [k for k in _V2_REQUIRED if req.get(k) in (None, "")]
        if missing:
            raise _err(400, ErrorCode.MISSING_PARAMETERS, f"missing fields {missing}")
        slot = self._market_slot(req["ticker"])
        self._tradable(slot)
        coid = req["client_order_id"]
        if not isinstance(coid, str) or not coid.isascii() or len(coid) > COID_MAX:
            raise _err(
                400,
                ErrorCode.INVALID_PARAMETERS,
                f"client_order_id must be an ASCII string of at most {COID_MAX} characters",
            )
        if self._coid_taken(coid):
            raise _err(
                409,
                ErrorCode.ORDER_ALREADY_EXISTS,
                f"an order with client_order_id {coid!r} already exists",
            )
        side = req["side"]
        if side not in ("bid", "ask"):
            raise _err(400, ErrorCode.INVALID_ORDER, f"side must be 'bid' or 'ask', got {side!r}")
        price = self._parse_price(slot, req["price"])
        count = self._parse_count(req["count"])
        tif = shapes.TIF_BY_NAME.get(req["time_in_force"])
        if tif is None:
            raise _err(
                400, ErrorCode.INVALID_ORDER, f"unknown time_in_force {req['time_in_force']!r}"
            )
        stp_name = req.get("self_trade_prevention_type") or "taker_at_cross"
        stp = shapes.STP_BY_NAME.get(stp_name)
        if stp is None:
            raise _err(
                400, ErrorCode.INVALID_ORDER, f"unknown self_trade_prevention_type {stp_name!r}"
            )
        flags = {
            k: self._parse_bool(req, k)
            for k in ("post_only", "reduce_only", "cancel_order_on_pause")
        }
        if flags["post_only"] and tif != TIF_GTC:
            raise _err(
                400, ErrorCode.INVALID_ORDER, "post_only needs time_in_force good_till_canceled"
            )
        if req.get("expiration_time") is not None:
            raise _err(
                400,
                ErrorCode.INVALID_PARAMETERS,
                "expiration_time is not supported by the paper client",
            )
        if req.get("subaccount") not in (None, 0):
            raise _err(400, ErrorCode.INVALID_PARAMETERS, "the paper client has no subaccounts")
        group = -1
        gid = req.get("order_group_id")
        if gid is not None:
            group = self._group_index(gid)
            if self._groups[group].triggered:
                raise _err(
                    400,
                    ErrorCode.ORDER_GROUP_TRIGGERED,
                    f"order group {gid} is triggered; reset it first",
                )
        action = ORDER_BUY if side == "bid" else ORDER_SELL
        return {
            "slot": slot, "coid": coid, "side": SIDE_YES, "action": action, "price": price,
            "count": count, "tif": tif, "stp": stp, "group": group, **flags,
        }  # fmt: skip

    def _parse_price(self, slot: int, s: Any) -> int:
        if not isinstance(s, str):
            raise _err(400, ErrorCode.INVALID_PRICE, f"price must be a dollar string, got {s!r}")
        try:
            p = parse_price(s)
        except DecodeError as exc:
            raise _err(
                400, ErrorCode.INVALID_PRICE, f"price {s!r} is not a valid price", str(exc)
            ) from exc
        info = self._markets[slot]
        if not self._grids[info.structure][p]:
            raise _err(
                400,
                ErrorCode.INVALID_PRICE,
                f"price {s} is off the {info.structure.value} tick grid of {info.ticker}",
            )
        return p

    @staticmethod
    def _parse_count(s: Any) -> int:
        if not isinstance(s, str):
            raise _err(
                400, ErrorCode.INVALID_COUNT, f"count must be a fixed-point string, got {s!r}"
            )
        try:
            n = parse_count(s)
        except DecodeError as exc:
            raise _err(
                400, ErrorCode.INVALID_COUNT, f"count {s!r} is off the 0.01 contract grid", str(exc)
            ) from exc
        if n <= 0 or n > MAX_COUNT:
            raise _err(
                400,
                ErrorCode.INVALID_COUNT,
                f"count {s!r} must be in 0.01..{MAX_COUNT // COUNT_SCALE}",
            )
        return n

    @staticmethod
    def _parse_bool(req: Mapping[str, Any], key: str) -> bool:
        v = req.get(key, False)
        if v is None:
            return False
        if not isinstance(v, bool):
            raise _err(400, ErrorCode.INVALID_PARAMETERS, f"{key} must be a boolean, got {v!r}")
        return v

    # ================================================================== orders
    def _delays(self) -> tuple[float, float]:
        """(entry, ack) seconds drawn from the latency model (``core.latency``)."""
        if not self._lat_on:
            return 0.0, 0.0
        e, a = latency_sample(self._lat, self._rng.random(), self._rng.random())
        return e / 1000.0, a / 1000.0

    async def create_order(self, **fields: Any) -> dict[str, Any]:
        """V2 ``POST /portfolio/events/orders``.

        Args:
            fields: ticker, client_order_id, side ("bid"|"ask", YES leg), count and price
                (strings), time_in_force, self_trade_prevention_type, and optionally
                post_only, reduce_only, order_group_id, cancel_order_on_pause.

        Returns:
            ``{order_id, client_order_id, fill_count, remaining_count,
            average_fill_price, average_fee_paid, status, ts_ms}`` (strings, ts_ms int).

        Raises:
            KalshiApiError: see ``ErrorCode``.
        """
        entry, ack = self._delays()
        if entry:
            await asyncio.sleep(entry)
        out = self.create_order_now(fields)
        if ack:
            await asyncio.sleep(ack)
        return out

    def create_order_now(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``create_order`` at the exchange: no latency, same checks and fills."""
        try:
            req = self._parse_new(fields)
        except KalshiApiError:
            self.n_rejected += 1
            raise
        return self._create_response(self._place(req))

    def submit(
        self,
        ticker: str,
        side: int,
        action: int,
        price: int,
        count: int,
        *,
        tif: int = TIF_GTC,
        client_order_id: str | None = None,
        post_only: bool = False,
        reduce_only: bool = False,
        snap: bool = False,
    ) -> dict[str, Any]:
        """Typed order entry (actor, bench, env parity): core units, no latency.

        Args:
            ticker: market.
            side: SIDE_YES / SIDE_NO (the outcome bought or sold).
            action: ORDER_BUY / ORDER_SELL.
            price: limit in ticks on ``side``'s scale.
            count: count units.
            tif: TIF_*.
            client_order_id: defaults to a fresh id.
            snap: move a limit off the market's tick grid to the next grid price on the
                passive side (a buy's limit down, a sell's up) instead of refusing it.
                Book levels are on the grid, so a taker order fills exactly as with the
                raw limit (the env's rule computes limits without a grid).

        Returns:
            The V2 create response (as ``create_order``).
        """
        slot = self._market_slot(ticker)
        self._tradable(slot)
        if side not in (SIDE_YES, SIDE_NO) or action not in (ORDER_BUY, ORDER_SELL):
            raise _err(400, ErrorCode.INVALID_ORDER, f"bad side/action {side}/{action}")
        grid = self._grids[self._markets[slot].structure]
        yp = price if side == SIDE_YES else PRICE_MAX - price
        if snap and 0 < yp < PRICE_MAX and not grid[yp]:
            buys_yes = (side == SIDE_YES) == (action == ORDER_BUY)
            on = np.flatnonzero(grid)
            k = int(np.searchsorted(on, yp))
            yp = int(on[k - 1]) if buys_yes else int(on[min(k, on.shape[0] - 1)])
            if buys_yes and k == 0:
                yp = -1  # nothing on the grid at or below: refused below
            price = yp if side == SIDE_YES else PRICE_MAX - yp
        if not 0 < yp < PRICE_MAX or not grid[yp]:
            raise _err(400, ErrorCode.INVALID_PRICE, f"price {price} is off the tick grid")
        if not 0 < count <= MAX_COUNT:
            raise _err(400, ErrorCode.INVALID_COUNT, f"count {count} out of range")
        coid = client_order_id or f"{self._coid_prefix}{self._n + 1}"
        if self._coid_taken(coid):
            raise _err(409, ErrorCode.ORDER_ALREADY_EXISTS, f"client_order_id {coid!r} exists")
        req = {
            "slot": slot, "coid": coid, "side": side, "action": action, "price": price,
            "count": count, "tif": tif, "stp": STP_TAKER_AT_CROSS, "group": -1,
            "post_only": post_only, "reduce_only": reduce_only, "cancel_order_on_pause": False,
        }  # fmt: skip
        return self._create_response(self._place(req))

    def submit_taker(
        self, slot: int, side: int, action: int, price: int, count: int, *, tif: int = TIF_IOC
    ) -> tuple[int, int, int]:
        """``submit(ticker, side, action, price, count, tif=tif)`` for the actor's hot path.

        The same checks, fills, records, rec_ids and errors as ``submit`` (the order gets
        the default client order id), in one kernel call (``core.paper_book.
        paper_taker_submit``), and no response dict.  Falls back to ``submit`` whenever
        Python must take part: event subscribers, an order group, a ring with a backlog or
        no room, a given client id equal to this order's default one.

        Args:
            slot: the market's book slot; side, action, price, count, tif: as ``submit``
                (``tif`` IOC or FOK: a taker order never rests here).

        Returns:
            (order index, filled count units, fees money).

        Raises:
            KalshiApiError: as ``submit``.
        """
        info = self._markets.get(slot)
        if info is None:
            raise _err(404, ErrorCode.NOT_FOUND, f"market in slot {slot} not found")
        self._tradable(slot)
        typed = side in (SIDE_YES, SIDE_NO) and action in (ORDER_BUY, ORDER_SELL)
        ctx = self.taker_prepare(slot) if typed and tif != TIF_GTC else None
        if ctx is None:
            return self._submit_slow(slot, side, action, price, count, tif)
        books = self.books
        code, n, used, filled, fees = paper_taker_submit(  # type: ignore[call-arg]
            *ctx, books.qty, self._best_plain(), books.meta, slot, side, action, price, count, tif
        )
        err = self.taker_commit(slot, int(code), int(n), int(used), price, count)
        if err is not None:
            raise err
        return ctx[TAKER_I], int(filled), int(fees)

    def taker_prepare(self, slot: int) -> tuple[Any, ...] | None:
        """``paper_taker_submit``'s arguments up to ``fill_ctl`` for a new order in ``slot``.

        None when the order must go through Python (``submit_taker`` falls back to
        ``submit``): the market unknown or not active, event subscribers, a ring with a
        backlog or no room, a given client id equal to this order's default one.  Grows
        the order and fill arrays first, so the kernel has room.  After the kernel call,
        ``taker_commit`` must run (before any other call on this client).
        """
        info = self._markets.get(slot)
        if info is None or info.status != MarketStatus.ACTIVE or self._subs or self._queues:
            return None
        rings = self.rings
        if rings is not None and not (_room(rings.fills, VIEW_LEVELS) and _room(rings.orders, 2)):
            return None
        i = self._n
        if self._by_coid and f"{self._coid_prefix}{i + 1}" in self._by_coid:
            return None
        if i >= self._orders.shape[0]:
            self._grow_orders()
        if self._n_fills + VIEW_LEVELS > self._fills.shape[0]:
            self._grow_fills(VIEW_LEVELS)
        self._sync_capacity()
        return self._taker_args(self._grids[info.structure])

    def taker_ready(self, slot: int) -> bool:
        """``taker_prepare(slot) is not None`` without building the tuple (the actor's tick).

        The actor's step context holds the arrays themselves (rebuilt when
        ``taker_layout`` changes); the scalars come from ``taker_scalars``.
        """
        info = self._markets.get(slot)
        if info is None or info.status != MarketStatus.ACTIVE or self._subs or self._queues:
            return False
        rings = self.rings
        if rings is not None and not (_room(rings.fills, VIEW_LEVELS) and _room(rings.orders, 2)):
            return False
        i = self._n
        if self._by_coid and f"{self._coid_prefix}{i + 1}" in self._by_coid:
            return False
        if i >= self._orders.shape[0]:
            self._grow_orders()
        if self._n_fills + VIEW_LEVELS > self._fills.shape[0]:
            self._grow_fills(VIEW_LEVELS)
        if self.books.qty.shape[0] != self._cap_m:
            self._sync_capacity()
        return True

    def grid_of(self, slot: int) -> np.ndarray | None:
        """The valid-YES-price grid of the market in ``slot`` (None: not a market here)."""
        info = self._markets.get(slot)
        return None if info is None else self._grids[info.structure]

    def taker_dummy(self) -> tuple[Any, ...]:
        """A tuple shaped like ``taker_prepare``'s, for a kernel told not to use it."""
        return self._taker_args(self._any_grid)

    def _taker_args(self, grid: np.ndarray) -> tuple[Any, ...]:
        rings = self.rings
        r_ord = rings.orders if rings is not None else self._no_ring
        r_fill = rings.fills if rings is not None else self._no_fill_ring
        return (
            self._orders, self._extra, self._active, self._ctl, self._pos, self._liq, self._fees,
            grid, self._n, self.config.start_cash, self._clock(), self._px, self._vq,
            self._fill_out, self._fills, self._n_fills, self._next_rec_id,
            self._coid_prefix_bytes, self._coid_scratch, self._events2, rings is not None,
            r_ord.buf, r_ord.ctl, r_fill.buf, r_fill.ctl,
        )  # fmt: skip

    def taker_commit(  # noqa: PLR0917 -- the kernel's outcome, positionally
        self, slot: int, code: int, n: int, used: int, price: int, count: int
    ) -> KalshiApiError | None:
        """Book ``paper_taker_submit``'s outcome; the error ``submit`` would raise, or None."""
        if code != REJ_NONE:
            return self._taker_refused(code, slot, price, count)
        self.taker_booked(n, used)
        return None

    def taker_booked(self, n: int, used: int) -> None:
        """``taker_commit`` of an accepted order (``n`` fills, ``used`` rec_ids)."""
        self._n += 1
        self._coid.append(None)
        self._n_fills += n
        self._next_rec_id += used
        self._watch = True

    def _submit_slow(  # noqa: PLR0917 -- submit_taker's order, positionally
        self, slot: int, side: int, action: int, price: int, count: int, tif: int
    ) -> tuple[int, int, int]:
        self.submit(self._markets[slot].ticker, side, action, price, count, tif=tif)
        i = self._n - 1
        o = self._orders[i]
        return i, int(o["filled"]), int(o["fees"])

    def _taker_refused(self, code: int, slot: int, price: int, count: int) -> KalshiApiError:
        if code == TAKER_OFF_GRID:
            return _err(400, ErrorCode.INVALID_PRICE, f"price {price} is off the tick grid")
        if code == TAKER_BAD_COUNT:
            return _err(400, ErrorCode.INVALID_COUNT, f"count {count} out of range")
        self.n_rejected += 1
        if code == TAKER_NO_BOOK:
            return _err(
                503,
                ErrorCode.BOOK_UNAVAILABLE,
                f"the paper client has no valid book for {self._markets[slot].ticker}",
            )
        self._watch = True
        return self._rejection(code, slot)

    def submit_on_view(  # noqa: PLR0917 -- the order, positionally as submit's
        self,
        ticker: str,
        side: int,
        action: int,
        price: int,
        count: int,
        px: np.ndarray,
        qty: np.ndarray,
    ) -> dict[str, Any]:
        """An IOC taker ``submit`` that walks the book view ``px``/``qty`` instead of the live book.

        For an order that executes at the book it arrived on, which is no longer the live
        one (the actor's env execution: the env executes an order at the last decision
        point not later than its arrival).  Same checks, fills, records and events as
        ``submit``; liquidity consumption applies as usual.

        Args:
            ticker, side, action, price, count: as ``submit``.
            px, qty: int16 / int64 [2, K] the book view (``core.book.book_top_k``'s form).
        """
        if px.dtype != np.int16 or qty.dtype != np.int64 or px.shape != qty.shape:
            raise ValueError("the view must be int16 px and int64 qty of one shape [2, K]")
        self._view = (np.ascontiguousarray(px), np.ascontiguousarray(qty))
        try:
            return self.submit(ticker, side, action, price, count, tif=TIF_IOC)
        finally:
            self._view = None

    def _engine_submit(self, i: int, now: int) -> tuple[int, int]:
        """Run order ``i`` through ``core.paper_book.paper_submit`` (``paper_submit_on``)."""
        if self._view is not None:
            rej, n = paper_submit_on(
                self._orders, self._extra, i, self._active, self._ctl, self._pos,
                self.books.qty, self._liq, self._fees, self.config.start_cash,
                self._self_trade_guard(i), now // 1_000_000, self._view[0], self._view[1],
                self._fill_out,
            )  # fmt: skip
            return int(rej), int(n)
        rej, n = paper_submit(
            self._orders, self._extra, i, self._active, self._ctl, self._pos, self.books.qty,
            self.books.best, self._liq, self._fees, self.config.start_cash,
            self._self_trade_guard(i), now // 1_000_000, self._px,
            self._vq, self._fill_out,
        )  # fmt: skip
        return int(rej), int(n)

    def _place(self, req: dict[str, Any]) -> int:
        """Create order ``req`` and run it through the engine; raises on a rejection."""
        slot = req["slot"]
        if not self.books.meta[slot]["valid"]:
            self.n_rejected += 1
            raise _err(
                503,
                ErrorCode.BOOK_UNAVAILABLE,
                f"the paper client has no valid book for {self._markets[slot].ticker}",
            )
        self._sync_capacity()
        i = self._new_order(req["coid"])
        now = self._clock()
        flags = (
            int(req["post_only"])
            | int(req["reduce_only"]) << 1
            | (req["stp"] == STP_MAKER) << 2
            | int(req["cancel_order_on_pause"]) << 3
        )
        paper_init_order(self._orders, self._extra, i, now, slot, req["side"], req["action"],
                         req["price"], req["count"], req["tif"], flags, req["group"])  # fmt: skip
        rej, n = self._engine_submit(i, now)
        self._watch = True
        if rej != REJ_NONE:
            self._forget(i)
            self.n_rejected += 1
            raise self._rejection(rej, slot)
        if n:
            self._after_fills(n, now)
        self._order_event(i, POE_CREATED, now)
        return i

    def _forget(self, i: int) -> None:
        # a rejected order never existed (Kalshi keeps no record of it)
        assert i == self._n - 1, "only the newest order can be forgotten"
        coid = self._coid.pop()
        if coid is not None:
            self._by_coid.pop(coid)
        self._n -= 1

    def _free_cash(self) -> int:
        cash = account_cash(self._pos, self.config.start_cash)
        return int(cash - account_reserved(self._extra, self._active, self._ctl))

    def _rejection(self, rej: int, slot: int) -> KalshiApiError:
        ticker = self._markets[slot].ticker
        if rej == REJ_INSUFFICIENT_BALANCE:
            return _err(
                400,
                ErrorCode.INSUFFICIENT_BALANCE,
                "insufficient balance",
                f"available {shapes.money_dollars(self._free_cash())}",
            )
        if rej == REJ_POST_ONLY_CROSS:
            return _err(400, ErrorCode.INVALID_ORDER, "invalid order", "post only cross")
        if rej == REJ_REDUCE_ONLY:
            return _err(
                400,
                ErrorCode.INVALID_ORDER,
                "invalid order",
                f"reduce only: the order would increase the position in {ticker}",
            )
        name = REJECT_NAMES.get(rej, str(rej))
        return _err(400, ErrorCode.INVALID_ORDER, "invalid order", name)

    def _self_trade_guard(self, i: int) -> int:
        """Lowest take-ladder price order ``i`` may trade at without hitting our own orders.

        ``maker`` STP cancels our crossed resting orders instead (and returns -1).
        """
        n_active = int(self._ctl[CTL_N_ACTIVE])
        if n_active == 0 or (n_active == 1 and int(self._active[0]) == i):
            return -1
        o = self._orders[i]
        m = int(o["market"])
        ladder, our = rest_level(int(o["side"]), int(o["action"]), int(o["price"]))
        guard = -1
        now = self._clock()
        for k in range(int(self._ctl[CTL_N_ACTIVE])):
            j = int(self._active[k])
            r = self._orders[j]
            if j == i or r["market"] != m or r["status"] != ORD_RESTING:
                continue
            rl, rp = rest_level(int(r["side"]), int(r["action"]), int(r["price"]))
            if rl == ladder or rp + our < PRICE_MAX:
                continue  # same ladder, or does not cross
            if self._extra[i]["stp"] == STP_MAKER:
                paper_cancel(self._orders, self._extra, j, self._active, self._ctl)
                self._order_event(j, POE_CANCELED, now)
                return self._self_trade_guard(i)
            guard = max(guard, rp + 1)  # trade only strictly better than our own order
        return guard

    def _create_response(self, i: int) -> dict[str, Any]:
        o = self._orders[i]
        filled = int(o["filled"])
        yp_notional = (
            int(o["notional"]) if o["side"] == SIDE_YES else PRICE_MAX * filled - int(o["notional"])
        )
        avg_fee = None
        if filled:
            # dollars per contract = fees / 10_000 / (filled / 100), to $0.0001, half up
            avg_fee = shapes.money_dollars(
                (int(o["fees"]) * COUNT_SCALE * 2 + filled) // (2 * filled)
            )
        return {
            "order_id": self._uuid_of(i),
            "client_order_id": self._coid_of(i),
            "fill_count": format_count(filled),
            "remaining_count": format_count(int(o["remaining"])),
            "average_fill_price": shapes.avg_price_dollars(yp_notional, filled),
            "average_fee_paid": avg_fee,
            "status": shapes.STATUS_NAMES.get(int(o["status"]), "canceled"),
            "ts_ms": int(self._extra[i]["updated_ns"]) // 1_000_000,
        }

    async def amend_order(self, order_id: str, **fields: Any) -> dict[str, Any]:
        """V2 amend: new ``price`` and/or ``count`` (total, > filled); loses queue priority.

        Args:
            order_id: the order's id.
            fields: ticker, side (must match the order), price, count, and optionally
                client_order_id / updated_client_order_id.

        Returns:
            ``{"old_order": {...}, "order": {...}}``.
        """
        entry, ack = self._delays()
        if entry:
            await asyncio.sleep(entry)
        out = self.amend_order_now(order_id, fields)
        if ack:
            await asyncio.sleep(ack)
        return out

    def amend_order_now(self, order_id: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """``amend_order`` without the latency model."""
        i = self._order_index(order_id)
        o = self._orders[i]
        slot = int(o["market"])
        self._tradable(slot)
        if o["status"] != ORD_RESTING:
            raise _err(
                400, ErrorCode.INVALID_ORDER, "invalid order", "only resting orders can be amended"
            )
        allowed = {"ticker", "side", "price", "count", "client_order_id", "updated_client_order_id"}
        unknown = sorted(set(fields) - allowed)
        if unknown:
            raise _err(400, ErrorCode.INVALID_PARAMETERS, f"unknown amend fields {unknown}")
        if fields.get("ticker", self._markets[slot].ticker) != self._markets[slot].ticker:
            raise _err(400, ErrorCode.INVALID_ORDER, "ticker does not match the order")
        want_side = shapes.book_side(int(o["side"]), int(o["action"]))
        if fields.get("side", want_side) != want_side:
            raise _err(400, ErrorCode.INVALID_ORDER, f"side does not match the order ({want_side})")
        price = int(o["price"])
        if "price" in fields:
            yp = self._parse_price(slot, fields["price"])
            price = yp if int(o["side"]) == SIDE_YES else PRICE_MAX - yp
        count = int(o["count"])
        if "count" in fields:
            count = self._parse_count(fields["count"])
            if count <= int(o["filled"]):
                raise _err(400, ErrorCode.INVALID_COUNT, "count must exceed the filled count")
        new_coid = fields.get("updated_client_order_id")
        if new_coid is not None and (not isinstance(new_coid, str) or self._coid_taken(new_coid)):
            raise _err(409, ErrorCode.ORDER_ALREADY_EXISTS, f"client_order_id {new_coid!r} exists")
        old = self._order_json(i)
        saved_o = self._orders[i].copy()
        saved_e = self._extra[i].copy()
        paper_cancel(self._orders, self._extra, i, self._active, self._ctl)
        o["price"] = price
        o["count"] = count
        o["remaining"] = count - int(o["filled"])
        o["status"] = ORD_RESTING
        now = self._clock()
        rej, n = self._engine_submit(i, now)
        self._watch = True
        if rej != REJ_NONE:
            # the amend is refused; the order rests as before (at the back of the list)
            self._orders[i] = saved_o
            self._extra[i] = saved_e
            k = int(self._ctl[CTL_N_ACTIVE])
            self._active[k] = i
            self._ctl[CTL_N_ACTIVE] = k + 1
            self.n_rejected += 1
            raise self._rejection(rej, slot)
        if new_coid is not None:
            old_coid = self._coid[i]
            if old_coid is not None:
                self._by_coid.pop(old_coid)
            self._coid[i] = new_coid
            self._by_coid[new_coid] = i
        if n:
            self._after_fills(n, now)
        self._order_event(i, POE_AMENDED, now)
        return {"old_order": old, "order": self._order_json(i)}

    async def decrease_order(
        self, order_id: str, *, reduce_by: str | None = None, reduce_to: str | None = None
    ) -> dict[str, Any]:
        """V2 decrease: exactly one of ``reduce_by`` / ``reduce_to`` (count strings).

        Returns:
            ``{"order": {...}}``; a decrease to zero cancels the order.
        """
        entry, ack = self._delays()
        if entry:
            await asyncio.sleep(entry)
        out = self.decrease_order_now(order_id, reduce_by=reduce_by, reduce_to=reduce_to)
        if ack:
            await asyncio.sleep(ack)
        return out

    def decrease_order_now(
        self, order_id: str, *, reduce_by: str | None = None, reduce_to: str | None = None
    ) -> dict[str, Any]:
        """``decrease_order`` without the latency model."""
        i = self._order_index(order_id)
        o = self._orders[i]
        self._tradable(int(o["market"]), cancel=True)
        if (reduce_by is None) == (reduce_to is None):
            raise _err(
                400, ErrorCode.INVALID_PARAMETERS, "give exactly one of reduce_by, reduce_to"
            )
        if o["status"] != ORD_RESTING:
            raise _err(400, ErrorCode.INVALID_ORDER, "invalid order", "the order is not resting")
        rem = int(o["remaining"])
        if reduce_by is not None:
            by = self._parse_count(reduce_by)
        else:
            to = 0 if reduce_to in ("0", "0.0", "0.00") else self._parse_count(reduce_to)
            if to >= rem:
                raise _err(
                    400, ErrorCode.INVALID_COUNT, "reduce_to must be below the remaining count"
                )
            by = rem - to
        paper_decrease(self._orders, self._extra, i, self._active, self._ctl, by)
        event = POE_DECREASED if o["remaining"] > 0 else POE_CANCELED
        self._order_event(i, event, self._clock())
        return {"order": self._order_json(i)}

    async def cancel_order(self, order_id: str) -> dict[str, Any]:
        """``DELETE /portfolio/events/orders/{id}``.

        Returns:
            ``{"order": {...}, "reduced_by_fp": "..."}``.
        """
        entry, ack = self._delays()
        if entry:
            await asyncio.sleep(entry)
        out = self.cancel_order_now(order_id)
        if ack:
            await asyncio.sleep(ack)
        return out

    def cancel_order_now(self, order_id: str) -> dict[str, Any]:
        """``cancel_order`` without the latency model."""
        i = self._order_index(order_id)
        self._tradable(int(self._orders[i]["market"]), cancel=True)
        if self._orders[i]["status"] != ORD_RESTING:
            raise _err(404, ErrorCode.NOT_FOUND, f"order {order_id} is not resting")
        n = paper_cancel(self._orders, self._extra, i, self._active, self._ctl)
        self._order_event(i, POE_CANCELED, self._clock())
        return {"order": self._order_json(i), "reduced_by_fp": format_count(int(n))}

    async def batch_create_orders(self, orders: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """V2 batch create: each item succeeds or carries its own ``error``.

        Returns:
            ``{"orders": [{"client_order_id", "order" | None, "error" | None}, ...]}``.
        """
        if not isinstance(orders, Sequence) or not 1 <= len(orders) <= MAX_BATCH:
            raise _err(400, ErrorCode.INVALID_PARAMETERS, f"a batch holds 1..{MAX_BATCH} orders")
        entry, ack = self._delays()
        if entry:
            await asyncio.sleep(entry)
        out: list[dict[str, Any]] = []
        for req in orders:
            coid = req.get("client_order_id") if isinstance(req, Mapping) else None
            try:
                item = {"client_order_id": coid, "order": self.create_order_now(req), "error": None}
            except KalshiApiError as exc:
                item = {"client_order_id": coid, "order": None, "error": exc.to_json()["error"]}
            out.append(item)
        if ack:
            await asyncio.sleep(ack)
        return {"orders": out}

    async def batch_cancel_orders(self, order_ids: Sequence[str]) -> dict[str, Any]:
        """V2 batch cancel.

        Returns:
            ``{"orders": [{"order_id", "order" | None, "reduced_by_fp", "error" | None}]}``.
        """
        if not isinstance(order_ids, Sequence) or not 1 <= len(order_ids) <= MAX_BATCH:
            raise _err(400, ErrorCode.INVALID_PARAMETERS, f"a batch holds 1..{MAX_BATCH} ids")
        entry, ack = self._delays()
        if entry:
            await asyncio.sleep(entry)
        out: list[dict[str, Any]] = []
        for oid in order_ids:
            try:
                r = self.cancel_order_now(oid)
                item = {"order_id": oid, "order": r["order"], "reduced_by_fp": r["reduced_by_fp"]}
                item["error"] = None
            except KalshiApiError as exc:
                item = {"order_id": oid, "order": None, "reduced_by_fp": "0.00"}
                item["error"] = exc.to_json()["error"]
            out.append(item)
        if ack:
            await asyncio.sleep(ack)
        return {"orders": out}

    # ================================================================== order groups
    def _group_index(self, gid: Any) -> int:
        g = self._group_by_id.get(gid) if isinstance(gid, str) else None
        if g is None or self._groups[g].deleted:
            raise _err(404, ErrorCode.NOT_FOUND, f"order group {gid!r} not found")
        return g

    async def create_order_group(self, contracts_limit: str) -> dict[str, Any]:
        """``POST /portfolio/order_groups``: contracts_limit (count string, 1..1,000,000).

        Returns:
            ``{"order_group_id": "..."}``.
        """
        n = self._parse_count(contracts_limit)
        if not COUNT_SCALE <= n <= 1_000_000 * COUNT_SCALE:
            raise _err(400, ErrorCode.INVALID_PARAMETERS, "contracts_limit must be 1..1,000,000")
        gid = shapes.paper_uuid("group", self.account_id, len(self._groups) + 1)
        self._group_by_id[gid] = len(self._groups)
        self._groups.append(_Group(gid, n))
        return {"order_group_id": gid}

    def get_order_group(self, gid: str) -> dict[str, Any]:
        """``GET /portfolio/order_groups/{id}``."""
        g = self._group_index(gid)
        grp = self._groups[g]
        ids = [self._uuid_of(i) for i in range(self._n) if self._extra[i]["group"] == g]
        return {
            "order_group_id": grp.gid,
            "contracts_limit_fp": format_count(grp.limit),
            "is_auto_cancel_enabled": True,
            "status": "triggered" if grp.triggered else "active",
            "orders": ids,
        }

    def reset_order_group(self, gid: str) -> dict[str, Any]:
        """Clear the triggered state and the rolling volume."""
        grp = self._groups[self._group_index(gid)]
        grp.triggered = False
        grp.window.clear()
        grp.filled = 0
        return {}

    def trigger_order_group(self, gid: str) -> dict[str, Any]:
        """Cancel every resting order of the group now; new orders refused until reset."""
        self._trigger(self._group_index(gid), self._clock())
        return {}

    def update_order_group_limit(self, gid: str, contracts_limit: str) -> dict[str, Any]:
        """A new limit; below the current rolling volume it triggers the group."""
        g = self._group_index(gid)
        self._groups[g].limit = self._parse_count(contracts_limit)
        self._check_group(g, self._clock())
        return {}

    def delete_order_group(self, gid: str) -> dict[str, Any]:
        """Cancel the group's resting orders and remove it."""
        g = self._group_index(gid)
        self._trigger(g, self._clock())
        self._groups[g].deleted = True
        return {}

    def _trigger(self, g: int, now: int) -> None:
        self._groups[g].triggered = True
        for k in range(int(self._ctl[CTL_N_ACTIVE]) - 1, -1, -1):
            j = int(self._active[k])
            if self._extra[j]["group"] == g and self._orders[j]["status"] == ORD_RESTING:
                paper_cancel(self._orders, self._extra, j, self._active, self._ctl)
                self._order_event(j, POE_CANCELED, now)

    def _check_group(self, g: int, now: int) -> None:
        grp = self._groups[g]
        while grp.window and grp.window[0][0] <= now - ORDER_GROUP_WINDOW_NS:
            grp.filled -= grp.window.popleft()[1]
        if not grp.triggered and grp.filled > grp.limit:
            self._trigger(g, now)

    # ================================================================== fills
    # ================================================================== fills
    def _after_fills(self, n: int, now: int) -> None:
        """Record the ``n`` engine fills in the scratch buffer: history, ring, events, groups."""
        if self._n_fills + n > self._fills.shape[0]:
            self._grow_fills(n)
        off = self._n_fills
        paper_record_fills(self._fill_out, n, self._fills, off, self._next_rec_id, now,
                           self._extra)  # fmt: skip
        self._next_rec_id += n
        self._n_fills += n
        fills = self._fills[off : off + n]
        if self.rings is not None:
            self.rings.fills.push_batch(fills)
        ids = fills["order_id"].tolist()
        publish = bool(self._subs or self._queues)
        groups: dict[int, None] = {}
        if self._groups:
            counts = fills["count"].tolist()
            for oid, c in zip(ids, counts, strict=True):
                g = int(self._extra[oid - 1]["group"])  # order ids are dense from 1
                if g >= 0:
                    self._groups[g].window.append((now, c))
                    self._groups[g].filled += c
                    groups[g] = None
        if publish:
            for k in range(n):
                m = int(fills[k]["market"])
                fj = self._fill_json(off + k)
                self._publish(shapes.fill_msg(fj, int(self._pos[m]["position"])))
        for oid in dict.fromkeys(ids):
            self._order_event(oid - 1, POE_FILLED, now)
        if publish:
            for m in {int(x) for x in fills["market"]}:
                msg = shapes.position_msg(
                    self.books.ticker_of(m), self._pos[m], self.config.user_id
                )
                self._publish(msg)
        for g in groups:
            self._check_group(g, now)

    def _grow_fills(self, n: int) -> None:
        size = max(2 * self._fills.shape[0], self._n_fills + n)
        grown = np.zeros(size, dtype=PAPER_FILL_DTYPE)
        grown[: self._n_fills] = self._fills[: self._n_fills]
        self._fills = grown
        self.taker_layout += 1

    def _fill_json(self, k: int) -> dict[str, Any]:
        f = self._fills[k]
        i = int(f["order_id"]) - 1
        return shapes.fill_json(
            f,
            fill_id=shapes.paper_uuid("fill", self.account_id, int(f["rec_id"])),
            order_id=self._uuid_of(i),
            client_order_id=self._coid_of(i),
            ticker=self.books.ticker_of(int(f["market"])),
        )

    # ================================================================== hot-path hooks
    def on_book_update(self, slots: np.ndarray | Sequence[int]) -> int:
        """The feed changed the books of ``slots``: consumption and resting orders react.

        Cheap by design: returns at once when nothing rests and nothing is consumed; one
        kernel call otherwise.  Pass an int64 array (e.g. the ``market`` column of the
        deltas just applied; repeats are fine) to avoid a conversion.

        Returns:
            Fills that happened.
        """
        if not self._watch:
            return 0
        if type(slots) is not np.ndarray or slots.dtype.kind not in "iu" or slots.ndim != 1:
            slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        ctx = self._ob_ctx
        qty = self.books.qty
        if ctx is None or self._ob_qty is not qty or self._ob_layout != self.taker_layout:
            if qty.shape[0] != self._cap_m:  # the books grew (qty was replaced)
                self._sync_capacity()
            ctx = self._on_book_ctx()
        now = self._clock()
        total = 0
        while True:
            r = self._k_on_book(ctx, slots, now // 1_000_000)
            n = r >> 1
            if n:
                self._after_fills(n, now)
            total += n
            if n < N_PRICES:  # the fill scratch (N_PRICES records) was not filled up
                self._watch = bool(r & 1)
                return total

    def warm_on_book(self) -> None:
        """Compile or load ``on_book_update``'s kernel now (for int32 and int64 slots)."""
        ctx = self._on_book_ctx()
        for dt in (np.int32, np.int64):
            self._k_on_book.prepare(ctx, np.zeros(1, dtype=dt), 0)

    def _on_book_ctx(self) -> Any:
        books = self.books
        self._ob_ctx = new_on_book_ctx(
            self._orders, self._extra, self._active, self._ctl, self._pos, books.qty,
            self._best_plain(), self._liq, self._fees, self._qm, self.config.start_cash,
            self._dirty, self._px, self._vq, self._fill_out,
        )  # fmt: skip
        self._ob_layout, self._ob_qty = self.taker_layout, books.qty
        self._k_on_book.reset()
        return self._ob_ctx

    def on_trades(self, recs: np.ndarray) -> int:
        """Public trades (TRADE_DTYPE records, ``market`` = book slot) hit our ladders.

        Returns:
            Fills that happened.
        """
        if self._ctl[CTL_N_ACTIVE] == 0 or recs.shape[0] == 0:
            return 0
        if recs.dtype != TRADE_DTYPE:
            raise TypeError(f"on_trades needs TRADE_DTYPE records, got {recs.dtype}")
        self._sync_capacity()
        now = self._clock()
        n = paper_on_trades(
            self._orders, self._extra, self._active, self._ctl, self._pos, self._fees, self._qm,
            self.config.start_cash, recs, now // 1_000_000, self._fill_out,
        )  # fmt: skip
        if n:
            self._after_fills(int(n), now)
        return int(n)

    # ================================================================== reads
    def get_balance(self) -> dict[str, Any]:
        """``GET /portfolio/balance``: balance = cash not held for resting orders."""
        cash = account_cash(self._pos, self.config.start_cash)
        free = cash - account_reserved(self._extra, self._active, self._ctl)
        value = self._positions_value()
        return {
            "balance": shapes.money_cents(free),
            "balance_dollars": shapes.money_dollars(free),
            "portfolio_value": shapes.money_cents(value),
            "portfolio_value_dollars": shapes.money_dollars(value),
            "updated_ts": self._clock() // 1_000_000_000,
        }

    @property
    def cash(self) -> int:
        """Account cash in money units (before resting-order holds)."""
        return int(account_cash(self._pos, self.config.start_cash))

    @property
    def positions(self) -> np.ndarray:
        """POSITION_DTYPE per book slot (read-only view of the account state)."""
        return self._pos_view

    def liquidity(self, slot: int) -> np.ndarray:
        """LIQUIDITY_DTYPE [1] view: what our orders took in ``slot`` (core.liquidity)."""
        self._sync_capacity()
        return self._liq[slot : slot + 1]

    def set_liquidity(self, slot: int, saved: np.ndarray) -> None:
        """Put back a copy of ``liquidity(slot)`` taken earlier (an order executing at an
        earlier book meets the consumption of that book; ``on_book_update`` then brings it
        to the book now)."""
        if saved.dtype != LIQUIDITY_DTYPE or saved.shape != (1,):
            raise ValueError("saved liquidity must be LIQUIDITY_DTYPE [1]")
        self._sync_capacity()
        self._liq[slot] = saved[0]
        self._watch = True

    def _best_plain(self) -> np.ndarray:
        # books.best as a plain ndarray (a subclass costs a kernel call ~1 us to type)
        best = self.books.best
        if best is not self._best_src:
            self._best_src, self._best_view = best, best.view(np.ndarray)
        return self._best_view

    def _positions_value(self) -> int:
        # marked at the best bid of the held side (what selling now would give at the top)
        total = 0
        for m in np.flatnonzero(self._pos["position"]).tolist():
            p = int(self._pos[m]["position"])
            side = SIDE_YES if p > 0 else SIDE_NO
            bid = int(self.books.best[m, side])
            if bid != NO_PRICE:
                total += abs(p) * bid // 10
        return total

    def _resting_in(self, slot: int) -> list[int]:
        return [
            int(j)
            for j in self._active[: int(self._ctl[CTL_N_ACTIVE])]
            if self._orders[j]["market"] == slot and self._orders[j]["status"] == ORD_RESTING
        ]

    def _cancel_where(self, slot: int, *, only_on_pause: bool) -> None:
        now = self._clock()
        for j in self._resting_in(slot):
            if only_on_pause and not self._extra[j]["cancel_on_pause"]:
                continue
            paper_cancel(self._orders, self._extra, j, self._active, self._ctl)
            self._order_event(j, POE_CANCELED, now)

    def get_positions(self, ticker: str | None = None) -> dict[str, Any]:
        """``GET /portfolio/positions``: markets with a position, volume or P&L, by ticker."""
        now = self._clock()
        out = []
        for m in sorted(self._markets, key=lambda m: self._markets[m].ticker):
            p = self._pos[m]
            if ticker is not None and self._markets[m].ticker != ticker:
                continue
            if p["position"] == 0 and p["volume"] == 0 and p["realized_pnl"] == 0:
                continue
            out.append(
                shapes.position_json(self._markets[m].ticker, p, len(self._resting_in(m)), now)
            )
        return {"market_positions": out, "event_positions": [], "cursor": ""}

    def get_fills(
        self, ticker: str | None = None, order_id: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """``GET /portfolio/fills``, newest first."""
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise _err(400, ErrorCode.INVALID_PARAMETERS, "limit must be 1..1000")
        out = []
        want_slot = self._market_slot(ticker) if ticker is not None else None
        want_oid = int(self._orders[self._order_index(order_id)]["order_id"]) if order_id else None
        for k in range(self._n_fills - 1, -1, -1):
            f = self._fills[k]
            if want_slot is not None and f["market"] != want_slot:
                continue
            if want_oid is not None and f["order_id"] != want_oid:
                continue
            out.append(self._fill_json(k))
            if len(out) >= limit:
                break
        return {"fills": out, "cursor": ""}

    def get_orders(self, ticker: str | None = None, status: str | None = None) -> dict[str, Any]:
        """``GET /portfolio/orders`` (status resting|canceled|executed), newest first."""
        codes = {"resting": ORD_RESTING, "canceled": ORD_CANCELED, "executed": ORD_EXECUTED}
        if status is not None and status not in codes:
            raise _err(400, ErrorCode.INVALID_PARAMETERS, f"unknown status {status!r}")
        want_slot = self._market_slot(ticker) if ticker is not None else None
        out = []
        for i in range(self._n - 1, -1, -1):
            o = self._orders[i]
            if want_slot is not None and o["market"] != want_slot:
                continue
            if status is not None and o["status"] != codes[status]:
                continue
            out.append(self._order_json(i))
        return {"orders": out, "cursor": ""}

    def get_order(self, order_id: str) -> dict[str, Any]:
        """``GET /portfolio/orders/{id}``."""
        return {"order": self._order_json(self._order_index(order_id))}

    def get_settlements(self) -> dict[str, Any]:
        """``GET /portfolio/settlements``, newest first."""
        return {"settlements": list(reversed(self._settlements)), "cursor": ""}

    def fills_array(self) -> np.ndarray:
        """Every fill so far (PAPER_FILL_DTYPE copy, oldest first)."""
        return self._fills[: self._n_fills].copy()

    def settlements_array(self) -> np.ndarray:
        """Every settlement so far (PAPER_SETTLEMENT_DTYPE, oldest first)."""
        if not self._settle_recs:
            return np.zeros(0, dtype=PAPER_SETTLEMENT_DTYPE)
        return np.concatenate(self._settle_recs)

    def orders_array(self) -> np.ndarray:
        """Every order so far (ORDER_DTYPE copy, index = order_id - 1)."""
        return self._orders[: self._n].copy()

    # ================================================================== restart
    # ================================================================== restart
    def restore(self, saved: SavedAccount) -> None:
        """Rebuild this (fresh) client's account from its stored logs.

        Fills and settlements are replayed in rec_id order through the kernels the live
        path uses (``paper_replay_fills`` books each fill with the same
        ``core.account.book_fill`` call and exact cash change as live), so positions, cash
        and fees come back exactly.  Orders come back in their last stored state; a resting
        order rejoins the back of its level's queue as the book shows it now (queue
        positions are not persisted) and leaves its order group (groups live in memory).

        Raises:
            StoreError: the client already holds orders or fills, or the logs have a hole.
        """
        if self._n or self._n_fills:
            raise StoreError("restore needs a fresh PaperClient")
        self.account_id = saved.account_id
        self._set_account_prefixes()
        self.config = dataclasses.replace(self.config, start_cash=saved.start_cash)
        slot_of: dict[int, int] = {}
        for mid, ticker in saved.tickers.items():
            slot = self.books.slots.get(ticker)
            if slot is None or slot not in self._markets:
                slot = self.add_market(MarketInfo(ticker))
            slot_of[mid] = slot
        self._sync_capacity()
        fills = saved.fills.copy()
        fills["market"] = [slot_of[int(m)] for m in fills["market"]]
        settles = saved.settlements.copy()
        settles["market"] = [slot_of[int(m)] for m in settles["market"]]
        start = 0
        for s in settles:
            end = int(np.searchsorted(fills["rec_id"], s["rec_id"]))
            paper_replay_fills(self._pos, fills[start:end])
            start = end
            yes = int(s["result"]) == RESULT_YES
            paper_settle(
                self._orders, self._extra, self._active, self._ctl, self._pos,
                int(s["market"]), yes,
            )  # fmt: skip
            self._settlements.append(self._settlement_json(s))
            self._settle_recs.append(settles[[int(np.flatnonzero(settles == s)[0])]])
        paper_replay_fills(self._pos, fills[start:])
        self._fills = np.zeros(max(256, 2 * fills.shape[0]), dtype=PAPER_FILL_DTYPE)
        self._fills[: fills.shape[0]] = fills
        self._n_fills = fills.shape[0]
        self.taker_layout += 1
        for k, row in enumerate(sorted(saved.orders, key=lambda r: r["order_id"])):
            if int(row["order_id"]) != k + 1:
                raise StoreError(f"paper account {saved.account_id}: order {k + 1} is missing")
            self._restore_order(row, slot_of[int(row["market_id"])], saved, fills)
        self._next_rec_id = saved.max_rec_id + 1
        self._watch = True

    def _restore_order(
        self, row: Mapping[str, Any], slot: int, saved: SavedAccount, fills: np.ndarray
    ) -> None:
        i = self._new_order(str(row["client_order_id"]))
        created = saved.created_ts.get(int(row["order_id"]), int(row["ts"]))
        flags = int(row["flags"])
        paper_init_order(self._orders, self._extra, i, created, slot, int(row["side"]),
                         int(row["action"]), int(row["price"]), int(row["count"]),
                         int(row["tif"]), flags, -1)  # fmt: skip
        o = self._orders[i]
        e = self._extra[i]
        for name in ("filled", "remaining", "status", "notional", "fees", "taker_fees",
                     "maker_fees", "rounding_acc"):  # fmt: skip
            o[name] = row[name]
        e["updated_ns"] = row["ts"]
        mine = fills[fills["order_id"] == o["order_id"]]
        for taker, key in ((1, "taker_cost"), (0, "maker_cost")):
            f = mine[mine["is_taker"] == taker]
            e[key] = int((f["count"] * f["price"].astype(np.int64) // 10).sum())
        if o["status"] != ORD_RESTING:
            return
        ladder, our = rest_level(int(o["side"]), int(o["action"]), int(o["price"]))
        queue_join(self._orders[i : i + 1], int(self.books.qty[slot, ladder, our]))
        eff = effective_position(self._orders, self._active, self._ctl, self._pos, slot, i)
        need = collateral_need(
            eff, int(o["side"]), int(o["action"]), int(o["price"]), int(o["remaining"]),
            self._fees[slot : slot + 1],
        )  # fmt: skip
        e["reserve"] = max(int(need), 0)
        k = int(self._ctl[CTL_N_ACTIVE])
        self._active[k] = i
        self._ctl[CTL_N_ACTIVE] = k + 1

    # ================================================================== events
    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> Subscription:
        """Receive ``fill`` / ``user_order`` / ``market_position`` messages.

        The callback runs synchronously inside the client and must not block; an exception
        it raises is logged and counted (``n_callback_errors``), never propagated.
        """
        sub = Subscription(self, callback)
        self._subs.append(sub)
        return sub

    def subscribe_queue(self, maxsize: int = 10_000) -> asyncio.Queue[dict[str, Any]]:
        """A bounded queue of the same messages; a full queue drops (``n_events_dropped``)."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self._queues.append(q)
        return q

    def unsubscribe_queue(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        """Stop feeding ``q``."""
        if q in self._queues:
            self._queues.remove(q)

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def _publish(self, msg: dict[str, Any]) -> None:
        for sub in self._subs:
            try:
                sub.callback(msg)
            except Exception:
                self.n_callback_errors += 1
                log.exception("paper: event subscriber failed")
        for q in self._queues:
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:
                self.n_events_dropped += 1


def create_trading_client(mode: str, books: BookSet, **kwargs: Any) -> PaperClient:
    """The trading client for ``mode``: 'paper' builds a PaperClient; 'live' is refused.

    Args:
        mode: 'paper' or 'live'.
        books: the live BookSet.
        kwargs: PaperClient's keyword arguments (config, markets, rings, account_id, clock).

    Raises:
        LiveTradingRefused: for mode 'live'.
        ValueError: any other mode.
    """
    if mode == "paper":
        return PaperClient(books, **kwargs)
    if mode == "live":
        raise LiveTradingRefused(
            "live trading is refused: kalshi-rl only trades on paper (mode='paper'); "
            "no code path sends orders to Kalshi"
        )
    raise ValueError(f"unknown trading mode {mode!r} (valid: 'paper'; 'live' is refused)")
