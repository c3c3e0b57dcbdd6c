"""The exchange's matching engine: exact price-time priority over one public book.

The public book of a market is the model's maker liquidity (``model.books``, which the
model kernel owns and trades against) plus the users' resting orders.  Where no user
order rests a level is the maker's quantity alone.  Where one does, the level keeps a
FIFO queue of entries: ``MakerLot`` s (maker quantity, in arrival order) and ``Order`` s,
so every order's true queue position is known (``queue_position``).  Rules:

* A maker add joins the back of the queue; a maker size decrease is taken from the
  maker's lots starting at a seeded-uniform position in the maker's queued quantity
  (orders cancelling at random: neither the queue model's optimistic nor its
  conservative extreme).
* A sim taker (the model's trade) is re-executed here: it takes its size from the best
  public level down to the model's price, FIFO inside each level, so a user's better
  price fills first and users ahead of maker quantity fill before it.
* A maker quote that would cross a user's resting order executes against it (the
  user is the maker, at the user's price).
* User orders (REST) take liquidity FIFO and rest the remainder (GTC), cancel it (IOC)
  or need the whole count (FOK); post_only orders that would cross are rejected;
  self-trade prevention ``taker_at_cross`` cancels the taker, ``maker`` cancels the
  resting order.  Amending price or increasing size loses priority; a decrease keeps it.
* At close resting orders are cancelled; at settlement positions are paid.

Every change of the public book is sent through ``Fanout`` as it happens (deltas, then a
trade per level), and private events go to the ``Listener``.  Nothing here does I/O.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from core.book import BookSet
from core.dtypes import (
    DELTA_DTYPE,
    EV_DELTA,
    EV_LIFECYCLE,
    EV_SNAPSHOT,
    EV_TRADE,
    LC_CLOSED,
    LC_SETTLED,
    MS_OPEN,
    NO_PRICE,
    PRICE_MAX,
    RESULT_YES,
    SIDE_NO,
    SIDE_YES,
)
from kalshi_rl.sim.accounts import Account, AccountsConfig, fill_money, reserve_for
from kalshi_rl.sim.fanout import Fanout
from kalshi_rl.sim.markets import SimMarkets

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

    @property
    def qty(self) -> int:
        """Queue quantity (remaining)."""
        return self.remaining


Entry = MakerLot | Order


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


class Engine:
    """Matching engine and accounts of the local exchange (see the module docstring).

    Args:
        markets: the sim's markets (``markets.model.books`` = maker liquidity,
            ``markets.books`` = the public book this engine keeps).
        fanout: sends public messages.
        config: account knobs.
        seed: seeds the maker-cancel position draw and order ids.
    """

    def __init__(
        self, markets: SimMarkets, fanout: Fanout, config: AccountsConfig, seed: int
    ) -> None:
        self.mk = markets
        self.fanout = fanout
        self.config = config
        self.rng = np.random.default_rng([seed, 0x5EED])
        self.levels: dict[tuple[int, int, int], collections.deque[Entry]] = {}
        self.n_resting = [0] * len(markets)
        self.busy_markets = np.zeros(max(len(markets), 1), dtype=bool)
        self.orders: dict[str, Order] = {}
        self.client_ids: dict[tuple[str, str], str] = {}
        self.accounts: dict[str, Account] = {}
        self.listener: Listener | None = None
        self._ids = itertools.count(1)
        self._seed = seed
        self._grids: dict[int, frozenset[int]] = {}
        self._busy_version = 0
        self._n_resting_total = 0
        self._stp_hit = False
        self.stats: collections.Counter[str] = collections.Counter()

    # ----------------------------------------------------------------- accounts
    def account(self, user: str) -> Account:
        """The account of ``user`` (opened with the starting balance on first use)."""
        acc = self.accounts.get(user)
        if acc is None:
            acc = self.accounts[user] = Account(user, self.config.starting_balance)
        return acc

    def _new_id(self) -> str:
        """A fresh order/fill id: a UUID-shaped string, deterministic per seed."""
        n = next(self._ids)
        return f"{self._seed & 0xFFFFFFFF:08x}-0000-4000-8000-{n:012x}"

    # ----------------------------------------------------------------- book plumbing
    @staticmethod
    def _apply(books: BookSet, m: int, side: int, price: int, d: int) -> None:
        """Add ``d`` to one level of ``books`` and keep its best price (no validation:
        the engine only makes changes that keep a level >= 0 and the book uncrossed)."""
        row = books.qty[m, side]
        new = int(row[price]) + d
        row[price] = new
        best = books.best
        if new > 0:
            best[m, side] = max(best[m, side], price)
        elif price == best[m, side]:
            nz = np.flatnonzero(row[:price])
            best[m, side] = int(nz[-1]) if nz.shape[0] else NO_PRICE

    def _public_delta(self, m: int, side: int, price: int, d: int, ts: int) -> None:
        """Change the public book and send the delta."""
        if d == 0:
            return
        self._apply(self.mk.books, m, side, price, d)
        self.fanout.send_delta(m, side, price, d, ts)

    def _maker_delta(self, m: int, side: int, price: int, d: int, ts: int) -> None:
        """Correct the model's own book (its liquidity was taken or restored here)."""
        if d != 0:
            self._apply(self.mk.model.books, m, side, price, d)

    def _maker_qty(self, m: int, side: int, price: int) -> int:
        return int(self.mk.model.books.qty[m, side, price])

    def _best(self, m: int, side: int) -> int:
        return int(self.mk.books.best[m, side])

    # ----------------------------------------------------------------- model events
    def busy(self) -> bool:
        """True when some user order rests (model events then need the queues)."""
        return self._n_resting_total > 0

    def process(self, ev: np.ndarray, flush: bool = True) -> None:
        """Route model (or replay) events through the exchange and send them.

        Markets without resting user orders pass straight through; in the others each
        event is interpreted against the queues (see the module docstring).  The maker's
        book (``model.books``) must be the state right after these events: a batch that
        touches a market with resting orders must be one model step (SimExchange.advance
        steps the model that way while ``busy()``).
        """
        if ev.shape[0] == 0:
            return
        if not self.busy():
            self._passthrough(ev)
            self._lifecycle_effects(ev)
            if flush:
                self.fanout.flush_all()
            return
        version = self._busy_version
        hot = self._hot(ev)
        i = 0
        n = ev.shape[0]
        while i < n:
            if not hot[i]:
                j = i + 1
                while j < n and not hot[j]:
                    j += 1
                self._passthrough(ev[i:j])
                self._lifecycle_effects(ev[i:j])
                i = j
                continue
            i = self._event(ev, i)
            if version != self._busy_version:
                # a market gained or lost its last resting order inside the batch
                version = self._busy_version
                hot = self._hot(ev)
        if flush:
            self.fanout.flush_all()

    def _hot(self, ev: np.ndarray) -> np.ndarray:
        return self.busy_markets[ev["market"]]

    def touches_busy(self, ev: np.ndarray) -> bool:
        """True when some event of ``ev`` is in a market with a resting order."""
        return bool(self.busy_markets[ev["market"]].any()) if ev.shape[0] else False

    def _passthrough(self, ev: np.ndarray) -> None:
        """Events of markets with no user orders: the public book is the maker's."""
        d = ev[ev["kind"] == EV_DELTA]
        if d.shape[0]:
            recs = np.zeros(d.shape[0], dtype=DELTA_DTYPE)
            recs["market"] = d["market"]
            recs["side"] = d["side"]
            recs["price"] = d["price"]
            recs["delta"] = d["qty"]
            recs["exch_ts"] = d["ts"]
            self.mk.books.apply_deltas(recs)
        snaps = np.flatnonzero(ev["kind"] == EV_SNAPSHOT)
        for m in set(ev["market"][snaps].tolist()):
            self.mk.books.qty[m] = self.mk.model.books.qty[m]
            self.mk.books.best[m] = self.mk.model.books.best[m]
        self.fanout.dispatch(ev, flush=False)

    def _lifecycle_effects(self, ev: np.ndarray) -> None:
        lc = np.flatnonzero(ev["kind"] == EV_LIFECYCLE)
        for k in lc.tolist():
            e = ev[k]
            if int(e["side"]) == LC_CLOSED:
                self._close_market(int(e["market"]), int(e["ts"]))
            elif int(e["side"]) == LC_SETTLED:
                self._settle(int(e["market"]), int(e["price"]) == RESULT_YES, int(e["ts"]))

    def _event(self, ev: np.ndarray, i: int) -> int:
        """Handle event i of a market with resting orders; returns the next index."""
        e = ev[i]
        kind = int(e["kind"])
        m, side, price, qty, ts = (
            int(e["market"]), int(e["side"]), int(e["price"]), int(e["qty"]), int(e["ts"])
        )  # fmt: skip
        if kind == EV_DELTA:
            nxt = ev[i + 1] if i + 1 < ev.shape[0] else None
            if (
                nxt is not None
                and int(nxt["kind"]) == EV_TRADE
                and int(nxt["market"]) == m
                and int(nxt["group"]) == int(e["group"])
                and qty < 0
            ):
                self._sim_taker(m, side, price, -qty, ts)
                return i + 2
            if qty > 0:
                self._maker_add(m, side, price, qty, ts)
            else:
                self._maker_cancel(m, side, price, -qty, ts)
            return i + 1
        if kind == EV_SNAPSHOT:
            j = i
            while j + 1 < ev.shape[0] and int(ev[j + 1]["kind"]) == EV_SNAPSHOT:
                if int(ev[j + 1]["group"]) != int(e["group"]):
                    break
                j += 1
            self._resync_market(m, ts)
            self.fanout.dispatch(ev[i : j + 1], flush=False)
            return j + 1
        self.fanout.dispatch(ev[i : i + 1], flush=False)
        self._lifecycle_effects(ev[i : i + 1])
        return i + 1

    def _maker_add(self, m: int, side: int, price: int, qty: int, ts: int) -> None:
        # the kernel already added qty to the maker's book; a crossing part executes
        taken = self._walk(m, other(side), PRICE_MAX - price, qty, None, ts, users_only=True)
        if taken:
            self._maker_delta(m, side, price, -taken, ts)
        rest = qty - taken
        if rest <= 0:
            return
        q = self.levels.get((m, side, price))
        if q is not None:
            q.append(MakerLot(rest))
        self._public_delta(m, side, price, rest, ts)

    def _maker_cancel(self, m: int, side: int, price: int, qty: int, ts: int) -> None:
        q = self.levels.get((m, side, price))
        if q is not None:
            lots = [x for x in q if isinstance(x, MakerLot)]
            total = sum(x.qty for x in lots)
            start = int(self.rng.integers(total)) if total > 0 else 0
            # the lot holding position `start`, then the ones behind it, then wrap
            acc = 0
            k0 = 0
            for k, lot in enumerate(lots):
                if acc + lot.qty > start:
                    k0 = k
                    break
                acc += lot.qty
            left = qty
            for lot in lots[k0:] + lots[:k0]:
                x = min(left, lot.qty)
                lot.qty -= x
                left -= x
                if left == 0:
                    break
            for lot in lots:
                if lot.qty == 0:
                    q.remove(lot)
        self._public_delta(m, side, price, -qty, ts)

    def _sim_taker(self, m: int, hit: int, price: int, size: int, ts: int) -> None:
        """Re-execute the model's trade: undo its take, then walk the public book."""
        self._maker_delta(m, hit, price, size, ts)
        self._walk(m, hit, price, size, None, ts)

    def sim_take(self, m: int, taker_side: int, size: int, limit: int | None = None) -> int:
        """A sim taker now: buy ``size`` of ``taker_side`` from the best public levels, FIFO,
        up to ``limit`` (price on the taker's side; None = any).  The maker's quantity it
        takes leaves the model's book too.  Returns the count taken."""
        hit = other(taker_side)
        min_price = 1 if limit is None else PRICE_MAX - limit
        taken = self._walk(m, hit, min_price, size, None, self.mk.model.now_ms)
        if taken:
            model_mk = self.mk.model.mk[m]
            model_mk["volume"] += taken
        self.fanout.flush_all()
        return taken

    def _resync_market(self, m: int, ts: int) -> None:
        """A replayed snapshot replaced the maker's book: rebuild queues and public book."""
        for (mm, side, price), q in self.levels.items():
            if mm != m:
                continue
            for lot in [x for x in q if isinstance(x, MakerLot)]:
                q.remove(lot)
            mq = self._maker_qty(m, side, price)
            if mq > 0:
                q.appendleft(MakerLot(mq))
        pub = self.mk.books
        pub.qty[m] = self.mk.model.books.qty[m]
        for o in self.orders.values():
            if o.resting and o.m == m:
                pub.qty[m, o.side, o.price] += o.remaining
        for side in (SIDE_YES, SIDE_NO):
            nz = np.flatnonzero(pub.qty[m, side])
            pub.best[m, side] = int(nz[-1]) if nz.shape[0] else -1

    # ----------------------------------------------------------------- the walk
    def _walk(  # noqa: C901, PLR0917 -- one FIFO loop, read top to bottom
        self,
        m: int,
        hit: int,
        min_price: int,
        size: int,
        taker: Order | None,
        ts: int,
        users_only: bool = False,
    ) -> int:
        """Take up to ``size`` from side ``hit`` at prices >= ``min_price``, best first,
        FIFO per level.  ``taker`` None = the sim's own liquidity is the taker.

        Returns:
            The count taken.
        """
        taken = 0
        while taken < size:
            p = self._best(m, hit)
            if p < 0 or p < min_price:
                break
            q = self.levels.get((m, hit, p))
            level_taken = 0
            maker_taken = 0
            fills: list[tuple[Order, int]] = []
            stop = False
            if q is None:
                if users_only:
                    break
                x = min(size - taken, self._maker_qty(m, hit, p))
                maker_taken = level_taken = x
            else:
                for entry in list(q):
                    want = size - taken - level_taken
                    if want <= 0:
                        break
                    if isinstance(entry, MakerLot):
                        if users_only:
                            continue
                        x = min(want, entry.qty)
                        entry.qty -= x
                        if entry.qty == 0:
                            q.remove(entry)
                        maker_taken += x
                        level_taken += x
                        continue
                    if taker is not None and entry.user == taker.user:
                        if taker.stp == STP_MAKER:
                            self._cancel_resting(entry, ts)
                            continue
                        stop = True
                        break
                    x = min(want, entry.remaining)
                    fills.append((entry, x))
                    level_taken += x
            if level_taken == 0:
                if stop or q is None or users_only:
                    break
                continue
            if maker_taken:
                self._maker_delta(m, hit, p, -maker_taken, ts)
            self._public_delta(m, hit, p, -level_taken, ts)
            taker_side = other(hit)
            yes_price = p if hit == SIDE_YES else PRICE_MAX - p
            trade_id = self.fanout.send_trade(m, taker_side, yes_price, level_taken, ts)
            model_mk = self.mk.model.mk[m]
            model_mk["last_price"] = yes_price
            if taker is not None or users_only:  # the model counted its own takers
                model_mk["volume"] += level_taken
            for maker, x in fills:
                self._fill(maker, x, p, False, trade_id, ts)
                if maker.remaining == 0:
                    self._unrest(maker)
                    maker.status = EXECUTED
                if self.listener is not None:
                    self.listener.on_order(maker)
            if taker is not None:
                self._fill(taker, level_taken, PRICE_MAX - p, True, trade_id, ts)
            taken += level_taken
            if stop:
                break
        if taker is not None and taken < size and self._stp_blocked(taker, m, hit, min_price):
            self._stp_hit = True  # taker_at_cross: the rest is cancelled, never rested
        return taken

    def _stp_blocked(self, taker: Order, m: int, hit: int, min_price: int) -> bool:
        p = self._best(m, hit)
        if p < 0 or p < min_price:
            return False
        q = self.levels.get((m, hit, p))
        return q is not None and any(isinstance(x, Order) and x.user == taker.user for x in q)

    def _fill(  # noqa: PLR0917 -- one fill's fields
        self, o: Order, count: int, price: int, is_taker: bool, trade_id: str, ts: int
    ) -> None:
        acc = self.account(o.user)
        pos = acc.position(o.m)
        used = min(count, o.claim)
        o.claim -= used
        pos.claimed[o.side] -= used
        revenue_e = pos.apply(o.side, count, price)
        money = fill_money(
            revenue_e, count, price, is_taker=is_taker, acc_e=o.acc_e, config=self.config
        )
        o.acc_e = money.acc_e
        acc.cash += money.cash_change
        o.remaining -= count
        o.filled += count
        if is_taker:
            o.taker_fill_count += count
            o.taker_cost_e += count * price
            o.taker_fees += money.trade_fee
        else:
            o.maker_fill_count += count
            o.maker_cost_e += count * price
            o.maker_fees += money.trade_fee
        pos.fees_paid += money.trade_fee
        pos.last_ts_ms = ts
        o.updated_ms = ts
        if o.reserve > 0:  # collateral follows the remaining count
            acc.reserved -= o.reserve
            o.reserve = (
                reserve_for(o.remaining - o.claim, o.remaining, o.price) if o.remaining else 0
            )
            acc.reserved += o.reserve
        f = Fill(self._new_id(), trade_id, o, count, price, is_taker, money.trade_fee,
                 money.cash_change, ts)  # fmt: skip
        self.stats["fills"] += 1
        if self.listener is not None:
            self.listener.on_fill(f)
            self.listener.on_position(o.user, o.m)

    # ----------------------------------------------------------------- resting
    def _rest(self, o: Order, ts: int, claim: int) -> None:
        """Put ``o`` (remaining > 0) at the back of its level's queue."""
        key = (o.m, o.side, o.price)
        q = self.levels.get(key)
        if q is None:
            q = self.levels[key] = collections.deque()
            mq = self._maker_qty(o.m, o.side, o.price)
            if mq > 0:
                q.append(MakerLot(mq))  # the maker's quantity was there first
        q.append(o)
        o.resting = True
        o.status = RESTING
        self.n_resting[o.m] += 1
        self.busy_markets[o.m] = True
        self._n_resting_total += 1
        self._busy_version += 1
        acc = self.account(o.user)
        o.claim = min(claim, o.remaining)
        acc.position(o.m).claimed[o.side] += o.claim
        o.reserve = reserve_for(o.remaining - o.claim, o.remaining, o.price)
        acc.reserved += o.reserve
        self._public_delta(o.m, o.side, o.price, o.remaining, ts)

    def _unrest(self, o: Order) -> None:
        """Take a resting order out of its queue (its public quantity already left)."""
        key = (o.m, o.side, o.price)
        q = self.levels[key]
        q.remove(o)
        if not any(isinstance(x, Order) for x in q):
            del self.levels[key]  # maker lots collapse back into the maker's level
        o.resting = False
        self.n_resting[o.m] -= 1
        self.busy_markets[o.m] = self.n_resting[o.m] > 0
        self._n_resting_total -= 1
        self._busy_version += 1
        acc = self.account(o.user)
        acc.reserved -= o.reserve
        o.reserve = 0
        pos = acc.position(o.m)
        pos.claimed[o.side] -= o.claim
        o.claim = 0

    def _cancel_resting(self, o: Order, ts: int) -> int:
        """Cancel a resting order; returns the count removed."""
        n = o.remaining
        self._public_delta(o.m, o.side, o.price, -n, ts)
        self._unrest(o)
        o.remaining = 0
        o.status = CANCELED
        o.updated_ms = ts
        if self.listener is not None:
            self.listener.on_order(o)
        return n

    def queue_position(self, o: Order) -> int:
        """Count units ahead of ``o`` in its level's queue (0 when not resting)."""
        if not o.resting:
            return 0
        ahead = 0
        for x in self.levels[(o.m, o.side, o.price)]:
            if x is o:
                return ahead
            ahead += x.qty
        return ahead

    # ----------------------------------------------------------------- order entry
    def submit(self, o: Order) -> Order:
        """Validate, match and (maybe) rest a new order.

        Raises:
            Rejection: the exchange refuses it (nothing changed).
        """
        ts = self.mk.model.now_ms
        o.created_ms = o.updated_ms = ts
        if o.client_order_id:
            prev = self.client_ids.get((o.user, o.client_order_id))
            if prev is not None and self.orders[prev].resting:
                raise Rejection(
                    409,
                    "order_already_exists",
                    f"client_order_id {o.client_order_id!r} is in use by a resting order",
                )
        self._check_market(o.m)
        self._check_price(o.m, o.price)
        if o.initial <= 0:
            raise Rejection(400, "invalid_order", "count must be positive")
        acc = self.account(o.user)
        pos = acc.position(o.m)
        if o.reduce_only and o.initial > max(0, pos.held(other(o.side)) - pos.claimed[o.side]):
            raise Rejection(400, "invalid_order", "reduce_only order would increase the position")
        best = self._best(o.m, other(o.side))
        if o.post_only and best >= 0 and best >= PRICE_MAX - o.price:
            raise Rejection(400, "invalid_order", "post_only order would cross the book")
        claim, need = self._admit(o, o.initial, 0, 0)
        self.orders[o.order_id] = o
        if o.client_order_id:
            self.client_ids[(o.user, o.client_order_id)] = o.order_id
        self._enter(o, o.initial, claim, need, ts)
        self.stats["orders"] += 1
        if self.listener is not None:
            self.listener.on_order(o)
        self.fanout.flush_all()
        return o

    def _admit(self, o: Order, target: int, own_reserve: int, own_claim: int) -> tuple[int, int]:
        """(claim, collateral) for ``target`` more of ``o``; Rejection if unaffordable.

        ``own_reserve``/``own_claim``: what ``o`` already holds (an amend re-enters it).
        """
        acc = self.account(o.user)
        pos = acc.position(o.m)
        closable = max(0, pos.held(other(o.side)) - (pos.claimed[o.side] - own_claim))
        claim = min(target, closable)
        need = reserve_for(target - claim, target, o.price)
        if need > acc.balance + own_reserve:
            raise Rejection(400, "insufficient_balance", "insufficient balance for this order")
        return claim, need

    def _enter(self, o: Order, target: int, claim: int, need: int, ts: int) -> None:
        """Take what crosses, then rest (GTC) or cancel the remainder."""
        acc = self.account(o.user)
        pos = acc.position(o.m)
        o.remaining = target
        o.status = RESTING
        o.claim = claim
        pos.claimed[o.side] += claim
        # collateral is held through the walk, so cash never goes negative mid-walk
        o.reserve = need
        acc.reserved += need
        cross_at = PRICE_MAX - o.price
        best = self._best(o.m, other(o.side))
        self._stp_hit = False
        crosses = best >= 0 and best >= cross_at
        if crosses and (o.tif != TIF_FOK or self._fillable(o, cross_at) >= target):
            self._walk(o.m, other(o.side), cross_at, target, o, ts)
        acc.reserved -= o.reserve
        o.reserve = 0
        keep = o.remaining > 0 and o.tif == TIF_GTC and not self._stp_hit
        if keep:
            pos.claimed[o.side] -= o.claim  # _rest re-takes the claim of the remainder
            claim_left = o.claim
            o.claim = 0
            self._rest(o, ts, claim_left)
            return
        pos.claimed[o.side] -= o.claim
        o.claim = 0
        o.status = EXECUTED if o.remaining == 0 else CANCELED
        o.remaining = 0

    def _check_market(self, m: int) -> None:
        if int(self.mk.model.mk[m]["status"]) != MS_OPEN:
            raise Rejection(400, "market_closed", f"market {self.mk.tickers[m]} is not open")

    def _check_price(self, m: int, price: int) -> None:
        grid = self._grids.get(m)
        if grid is None:
            row = self.mk.model.grid[m, : int(self.mk.model.mk[m]["grid_len"])]
            grid = self._grids[m] = frozenset(int(p) for p in row)
        if price not in grid:
            raise Rejection(
                400, "invalid_price", f"price is not on {self.mk.tickers[m]}'s price grid"
            )

    def _fillable(self, o: Order, cross_at: int) -> int:
        """Count an order could take now (its own user's orders excluded)."""
        side = other(o.side)
        row = self.mk.books.qty[o.m, side]
        total = 0
        for p in range(PRICE_MAX - 1, cross_at - 1, -1):
            if row[p] <= 0:
                continue
            q = self.levels.get((o.m, side, p))
            own = (
                sum(x.remaining for x in q if isinstance(x, Order) and x.user == o.user) if q else 0
            )
            total += int(row[p]) - own
            if total >= o.initial:
                break
        return total

    def cancel(self, user: str, order_id: str) -> tuple[Order, int]:
        """Cancel a resting order of ``user``; returns (order, count removed)."""
        o = self._own(user, order_id)
        self._check_active(o)
        n = self._cancel_resting(o, self.mk.model.now_ms)
        self.fanout.flush_all()
        return o, n

    def decrease(
        self, user: str, order_id: str, reduce_by: int | None, reduce_to: int | None
    ) -> Order:
        """Reduce a resting order's remaining count; it keeps its queue priority."""
        o = self._own(user, order_id)
        self._check_active(o)
        if (reduce_by is None) == (reduce_to is None):
            raise Rejection(400, "invalid_parameters", "give exactly one of reduce_by, reduce_to")
        target = o.remaining - reduce_by if reduce_by is not None else int(reduce_to or 0)
        if (reduce_by is not None and reduce_by <= 0) or not 0 <= target < o.remaining:
            raise Rejection(
                400, "invalid_parameters", "the new remaining count must be below the current one"
            )
        ts = self.mk.model.now_ms
        if target == 0:
            self._cancel_resting(o, ts)
        else:
            self._shrink(o, target, ts)
            if self.listener is not None:
                self.listener.on_order(o)
        self.fanout.flush_all()
        return o

    def _shrink(self, o: Order, target: int, ts: int) -> None:
        """Lower a resting order's remaining count in place (queue priority kept)."""
        acc = self.account(o.user)
        pos = acc.position(o.m)
        d = o.remaining - target
        o.remaining = target
        if o.claim > target:
            pos.claimed[o.side] -= o.claim - target
            o.claim = target
        acc.reserved -= o.reserve
        o.reserve = reserve_for(o.remaining - o.claim, o.remaining, o.price)
        acc.reserved += o.reserve
        o.updated_ms = ts
        self._public_delta(o.m, o.side, o.price, -d, ts)

    def amend(
        self, user: str, order_id: str, price: int, count: int, new_client_id: str | None
    ) -> tuple[Order, Order]:
        """Set a resting order's price and total count (filled + remaining).

        The same price with a smaller count keeps queue priority; a new price or a larger
        count re-enters the queue at the back (and may cross).

        Returns:
            (a copy of the order before, the order after).
        """
        o = self._own(user, order_id)
        self._check_active(o)
        self._check_price(o.m, price)
        if count <= o.filled:
            raise Rejection(400, "invalid_parameters", "count must exceed the filled count")
        old = dataclasses.replace(o)
        target = count - o.filled
        ts = self.mk.model.now_ms
        if price == o.price and target <= o.remaining:
            if target < o.remaining:
                self._shrink(o, target, ts)
            o.initial = count
        else:
            o_new_price = dataclasses.replace(o, price=price)
            claim, need = self._admit(o_new_price, target, o.reserve, o.claim)
            self._public_delta(o.m, o.side, o.price, -o.remaining, ts)
            self._unrest(o)
            o.price = price
            o.initial = count
            self._enter(o, target, claim, need, ts)
        if new_client_id:
            o.client_order_id = new_client_id
            self.client_ids[(user, new_client_id)] = o.order_id
        o.updated_ms = ts
        if self.listener is not None:
            self.listener.on_order(o)
        self.fanout.flush_all()
        return old, o

    def _own(self, user: str, order_id: str) -> Order:
        o = self.orders.get(order_id)
        if o is None or o.user != user:
            raise Rejection(404, "not_found", f"order {order_id} not found")
        return o

    def _check_active(self, o: Order) -> None:
        if int(self.mk.model.mk[o.m]["status"]) != MS_OPEN:
            raise Rejection(400, "market_closed", "the market is closed")
        if not o.resting:
            raise Rejection(400, "invalid_order", f"order {o.order_id} is {o.status}, not resting")

    # ----------------------------------------------------------------- lifecycle
    def _close_market(self, m: int, ts: int) -> None:
        for o in [o for o in self.orders.values() if o.resting and o.m == m]:
            self._cancel_resting(o, ts)

    def _settle(self, m: int, result_yes: bool, ts: int) -> None:
        for acc in self.accounts.values():
            if acc.settle(m, self.mk.tickers[m], result_yes, ts) is not None and self.listener:
                self.listener.on_position(acc.user, m)

    # ----------------------------------------------------------------- checks
    def check_invariants(self) -> list[str]:
        """Every queue agrees with the books (tests call this; empty list = consistent)."""
        bad = []
        pub = self.mk.books.qty
        maker = self.mk.model.books.qty
        user_at: collections.Counter[tuple[int, int, int]] = collections.Counter()
        for o in self.orders.values():
            if o.resting:
                user_at[(o.m, o.side, o.price)] += o.remaining
        for key, q in self.levels.items():
            lots = sum(x.qty for x in q if isinstance(x, MakerLot))
            if lots != maker[key]:
                bad.append(f"{key}: maker lots {lots} != maker book {maker[key]}")
        diff = pub - maker
        for m, side, p in zip(*np.nonzero(diff), strict=True):
            k = (int(m), int(side), int(p))
            if diff[k] != user_at.get(k, 0):
                bad.append(f"{k}: public - maker = {diff[k]} != resting {user_at.get(k, 0)}")
        for k, v in user_at.items():
            if diff[k] != v:
                bad.append(f"{k}: resting {v} not in the public book ({diff[k]})")
        for acc in self.accounts.values():
            if acc.cash < 0:
                bad.append(f"{acc.user}: cash {acc.cash} < 0")
        return bad
