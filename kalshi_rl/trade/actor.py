"""The actor: a deployed model trading many markets on paper, on the shared live books.

Inference only.  The actor reads the feed's ``BookSet`` in place, builds each market's
observation with ``core.features`` (THE kernel training used: market features from the
book's top levels and the market's rolling mid history, then account features of the
market's sub-account), asks the policy (``core.policy`` fast path, or torch), maps the
action to an order with the core engine's rule (``core.orders.action_to_order``, the
env's rule), passes the order through the risk gate and sends it to the paper client.
Every decision becomes an ``DECISION_DTYPE`` record pushed to a ring; a sink task (not the
actor) writes the ring to ``trading_actions``.  Nothing here awaits the database or feeds
anything back to training.

Decision ticks (per market):

* every ``tick_updates`` book updates (``meta.n_updates``), and at the update that makes
  a book valid again (a new clean segment: the mid history restarts, as a dataset's
  segment does) -- the cadence ``dataset build --cadence-updates N`` uses; when the feed
  applies several updates in one batch the actor decides once, on the newest book;
* and/or every ``tick_interval_s`` seconds for each market.

Skipped (counted, never shown to the policy): invalid books, books older than
``max_staleness_s``, malformed books (``core.book.book_check``), non-finite observations.

Sub-accounts: the env trades one market per episode from ``start_cash``; live, the paper
client holds one account over every market.  The account features of market m are those
of the paper client's own position record for m (read in place) with ``start_cash``
added to its cash flow -- so the actor sees exactly what the env saw after the same
fills.

Models: :meth:`Actor.switch_model` swaps between two decisions (the event loop runs one
decision at a time; the swap is one attribute assignment), after checking the new
model's identity (observation layout hash, action space, feature-kernel version).  A
mismatch is refused with a message and the old model keeps trading.  ``rollback`` goes
back to the previous model.  A shadow candidate decides beside the live model on the
same observations (its own sub-accounts, simulated taker fills on the same book) and
never trades; its records carry status AS_SHADOW.  Hot reload (LISTEN/NOTIFY and the
mtime fallback) lives in ``kalshi_rl.trade.reload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from core.book import BookSet
from core.dtypes import (
    ACT_HOLD,
    ACTION_PROBS_MAX,
    AS_HOLD,
    AS_MASKED,
    AS_REJECTED,
    AS_RISK,
    AS_SENT,
    AS_SHADOW,
    COUNT_SCALE,
    DECISION_DTYPE,
    DEFAULT_TOP_K,
    FILL_DTYPE,
    HIST_LEN,
    MARK_LIQUIDATION,
    MARK_MID,
    MEMBER_CENT,
    N_SIDES,
    NO_PRICE,
    NO_TS,
    ORDER_BUY,
    ORDER_DTYPE,
    POLICY_OK,
    POSITION_DTYPE,
    PRICE_MAX,
    REJ_NONE,
    SIDE_YES,
    TIF_IOC,
)
from core.features import N_FEATURES, N_MARKET_FEATURES
from core.fees import fee_schedule
from core.liquidity import new_liquidity
from core.ring import Ring
from kalshi_rl.errors import ConfigError, KalshiApiError, LiveTradingRefused, PolicyError
from kalshi_rl.trade.decide import DS_NAMES, DS_OK, prepare_decision, ttc_fraction
from kalshi_rl.trade.policy import LoadedModel, ModelIdentity
from kalshi_rl.trade.risk import ActorState, KillSwitch, RiskConfig, RiskGate, RiskReason

log = logging.getLogger(__name__)

LIVE_REFUSED = (
    "live execution is refused: the actor trades on paper only (mode='paper'); "
    "kalshi-rl has no code path that sends orders to Kalshi"
)


def refuse_live(mode: str) -> None:
    """Raise LiveTradingRefused for 'live', ConfigError for anything but 'paper'."""
    if mode == "live":
        raise LiveTradingRefused(LIVE_REFUSED)
    if mode != "paper":
        raise ConfigError(f"unknown execution mode {mode!r} (valid: 'paper'; 'live' is refused)")


@dataclass(frozen=True)
class ActorConfig:
    """Settings of one actor.

    Attributes:
        mode: execution mode; only 'paper' (``'live'`` raises LiveTradingRefused here).
        tick_updates: decide after this many book updates of a market (0 = off).
        tick_interval_s: also decide every this many seconds per market (0 = off).
        max_staleness_s: skip books with no update for longer (0 = never stale).
        ring_capacity: action records buffered for the sink (power of two).
        start_cash: each market's sub-account start (money); None = the model's env config.
        risk: limits and kill switch.
        subscriber_queue: size of each action-stream subscriber's queue (full = dropped).
    """

    mode: str = "paper"
    tick_updates: int = 1
    tick_interval_s: float = 0.0
    max_staleness_s: float = 30.0
    ring_capacity: int = 1 << 16
    start_cash: int | None = None
    risk: RiskConfig = field(default_factory=RiskConfig)
    subscriber_queue: int = 10_000

    def __post_init__(self) -> None:
        refuse_live(self.mode)
        if self.tick_updates < 0 or self.tick_interval_s < 0 or self.max_staleness_s < 0:
            raise ConfigError("tick_updates, tick_interval_s and max_staleness_s must be >= 0")
        if self.tick_updates == 0 and self.tick_interval_s == 0:
            raise ConfigError("give tick_updates or tick_interval_s (both are 0)")
        if self.ring_capacity < 1 or self.ring_capacity & (self.ring_capacity - 1):
            raise ConfigError(f"ring_capacity {self.ring_capacity} must be a power of two")


class EpisodeStore(Protocol):
    """Where episodes are opened and closed (kalshi_rl.trade.records.EpisodeStore)."""

    async def open_episode(
        self, model: LoadedModel, markets: Sequence[str], start_cash: int, shadow: bool
    ) -> int: ...

    async def close_episode(self, episode_id: int, summary: Mapping[str, Any]) -> None: ...


@dataclass
class _Run:
    """A model with its episode (live or shadow)."""

    model: LoadedModel
    episode_id: int
    step: int = 0
    started_value: int = 0


class OrderRules:
    """The model's env settings the order rule needs (sizes, slippage, caps)."""

    def __init__(self, env: Mapping[str, Any]) -> None:
        self.multi = env.get("action_mode", "DISCRETE") == "MULTI"
        self.order_size = int(env.get("order_size", COUNT_SCALE))
        self.slippage = int(env.get("slippage_ticks", 0))
        self.max_position = int(env.get("max_position", 10 * COUNT_SCALE))
        self.slip_choices = tuple(int(x) for x in env.get("slippage_choices", (0,)))
        self.size_choices = tuple(int(x) for x in env.get("size_choices", (COUNT_SCALE,)))
        self.start_cash = int(env.get("start_cash", 0))
        self.mark_mode = MARK_MID if env.get("mark_mode") == "MID" else MARK_LIQUIDATION
        self.fees = fee_schedule(precision=int(env.get("member_precision", MEMBER_CENT)))
        self.lot = int(env.get("count_lot", 1))

    def size_slip(self, dims: np.ndarray) -> tuple[int, int, int, int]:
        """(size, slip, size_idx, slip_idx) for an action's dimensions."""
        if self.multi:
            si, zi = int(dims[1]), int(dims[2])
            return self.size_choices[zi], self.slip_choices[si], zi, si
        return self.order_size, self.slippage, -1, -1


class Actor:
    """Trades ``markets`` with ``model`` on ``paper`` (see the module docstring).

    Args:
        books: the live BookSet (read in place).
        paper: the paper client (``kalshi_rl.trade.paper.PaperClient``).
        model: the model to start with (from ``kalshi_rl.trade.policy.load_model``).
        markets: tickers to trade (each must be a market the paper client knows).
        config: actor settings.
        store: opens/closes trading_episodes rows (None: episodes are numbered locally).
        market_times: ticker -> (open_ms, close_ms) for time-to-close (NO_TS unknown).
        market_grids: ticker -> bool [1001] valid YES prices (its price_level_structure);
            a limit off the grid is moved to the nearest less aggressive valid price.
        clock_ns: wall clock in ns (tests, parity replays).
        follow: the markets come from a followed market list (rolling listings): the
            actor may start with none and gets them from ``add_markets`` as they are
            listed.  Without it an empty ``markets`` is an error.
    """

    # per-market arrays (views sized len(tickers); see _PER_MARKET)
    slots: np.ndarray
    closed: np.ndarray
    open_ms: np.ndarray
    close_ms: np.ndarray
    seg_first_ms: np.ndarray
    seg_ts_max: np.ndarray
    seg_ts_receipt: np.ndarray
    hist: np.ndarray
    hist_n: np.ndarray
    last_updates: np.ndarray
    in_segment: np.ndarray
    last_decision_ns: np.ndarray
    pending_reset: np.ndarray
    _shadow_pos: np.ndarray

    def __init__(
        self,
        books: BookSet,
        paper: Any,
        model: LoadedModel,
        markets: Sequence[str],
        config: ActorConfig | None = None,
        *,
        store: EpisodeStore | None = None,
        market_times: Mapping[str, tuple[int, int]] | None = None,
        market_grids: Mapping[str, np.ndarray] | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        follow: bool = False,
    ) -> None:
        self.config = config or ActorConfig()
        refuse_live(self.config.mode)
        if not markets and not follow:
            raise ConfigError("the actor needs at least one market")
        self.books = books
        self.paper = paper
        self.store = store
        self.clock_ns = clock_ns
        self.identity: ModelIdentity = ModelIdentity.of_core(model.identity.action_space)
        problem = self.identity.mismatch(model.identity)
        if problem:
            raise PolicyError(
                f"{model.label} does not fit this actor's observation kernel: {problem}"
            )
        self.tickers: list[str] = []
        self.index_of_slot: dict[int, int] = {}
        self.index_of_ticker: dict[str, int] = {}
        self.grids: list[np.ndarray | None] = []
        self._cap = 0
        self._bufs: dict[str, np.ndarray] = {}
        self._append(list(dict.fromkeys(markets)), market_times or {}, market_grids or {})
        # scratch of one decision (reused: no allocation on the hot path)
        self._obs = np.zeros(N_FEATURES, dtype=np.float32)
        self._acct = np.zeros(1, dtype=POSITION_DTYPE)
        self._px = np.zeros((N_SIDES, DEFAULT_TOP_K), dtype=np.int16)
        self._qty = np.zeros((N_SIDES, DEFAULT_TOP_K), dtype=np.int64)
        # what our own orders took (core.liquidity); the paper client enforces it on fills,
        # the order rule and the valuation see the displayed book (see docs/actor.md)
        self._liq = new_liquidity(1)
        self._px_v = np.zeros((N_SIDES, DEFAULT_TOP_K), dtype=np.int16)
        self._qty_v = np.zeros((N_SIDES, DEFAULT_TOP_K), dtype=np.int64)
        self._sh_order = np.zeros(1, dtype=ORDER_DTYPE)
        self._sh_fills = np.zeros(DEFAULT_TOP_K, dtype=FILL_DTYPE)
        self._sh_liq = new_liquidity(1)
        self._rec = np.zeros(1, dtype=DECISION_DTYPE)
        self.ring = Ring(DECISION_DTYPE, self.config.ring_capacity)
        self.risk = RiskGate(self.config.risk)
        self.kill_switch: KillSwitch = self.risk.kill
        self._live = _Run(model, 0)
        self._previous: LoadedModel | None = None
        self._shadow: _Run | None = None
        self._rules = OrderRules(model.env_config.get("env", {}))
        self._shadow_rules: OrderRules | None = None
        self.start_cash = (
            self.config.start_cash if self.config.start_cash is not None else self._rules.start_cash
        )
        self._subscribers: list[asyncio.Queue[dict[str, Any]]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = True
        self.refusals: list[str] = []  # model switches refused, newest last
        self.counts: dict[str, int] = {
            "decisions": 0,
            "orders": 0,
            "fills": 0,
            "held": 0,
            "masked": 0,
            "risk_refused": 0,
            "rejected": 0,
            "coalesced_updates": 0,
            "bad_obs": 0,
            "swaps": 0,
            "shadow_decisions": 0,
            "stream_dropped": 0,
            "ring_overflow": 0,
            **{f"skip_{n}": 0 for n in DS_NAMES[1:]},
        }
        self.latency_ns: list[int] = []  # book received -> order answered, last 4096
        self.on_halt: list[Callable[[str], None]] = []
        # parity checks: (market index, exch_ts, observation, action dims, filled, ts from
        # receipt) per decision when set to a list (None in production: nothing is kept)
        self.trace: list[tuple[int, int, np.ndarray, np.ndarray, int, bool]] | None = None
        self.resumed: dict[str, int] = {}

    # ================================================================== markets
    # per-market state: attribute -> (dtype, fill, row shape).  Each attribute is a view of
    # the first len(tickers) rows of a buffer that doubles when full, so a new listing
    # costs O(1) amortised and the views stay C-contiguous (the kernels see the same types)
    _PER_MARKET: tuple[tuple[str, Any, Any, tuple[int, ...]], ...] = (
        ("slots", np.int64, 0, ()),
        ("closed", np.bool_, False, ()),  # no new positions (lifecycle)
        ("open_ms", np.int64, NO_TS, ()),
        ("close_ms", np.int64, NO_TS, ()),
        ("seg_first_ms", np.int64, NO_TS, ()),
        ("seg_ts_max", np.int64, NO_TS, ()),  # running max of book times
        ("seg_ts_receipt", np.bool_, False, ()),  # ... which is a receipt time
        ("hist", np.float64, 0.0, (HIST_LEN,)),
        ("hist_n", np.int64, 0, ()),
        ("last_updates", np.int64, 0, ()),
        ("in_segment", np.bool_, False, ()),
        ("last_decision_ns", np.int64, 0, ()),
        ("pending_reset", np.bool_, True, ()),
        ("_shadow_pos", POSITION_DTYPE, None, ()),
    )

    def _grow_to(self, n: int) -> None:
        """Make room for ``n`` markets (capacity doubles; rows kept; views re-sliced)."""
        if n > self._cap or not self._bufs:  # (an actor may start with no market)
            cap = max(n, 2 * self._cap, 4)
            for name, dtype, fill, shape in self._PER_MARKET:
                buf = np.zeros((cap, *shape), dtype=dtype)
                if fill is not None:
                    buf[:] = fill
                old = self._bufs.get(name)
                if old is not None:
                    buf[: self._cap] = old
                self._bufs[name] = buf
            self._cap = cap
        for name, *_ in self._PER_MARKET:
            setattr(self, name, self._bufs[name][:n])

    def _append(
        self,
        tickers: Sequence[str],
        times: Mapping[str, tuple[int, int]],
        grids: Mapping[str, np.ndarray | None],
    ) -> None:
        n0 = len(self.tickers)
        self._grow_to(n0 + len(tickers))
        for k, t in enumerate(tickers):
            i = n0 + k
            slot = self.books.slot(t)
            self.slots[i] = slot
            self.open_ms[i], self.close_ms[i] = times.get(t, (NO_TS, NO_TS))
            self.tickers.append(t)
            self.grids.append(grids.get(t))
            self.index_of_slot[int(slot)] = i
            self.index_of_ticker[t] = i

    def add_markets(
        self,
        tickers: Sequence[str],
        *,
        market_times: Mapping[str, tuple[int, int]] | None = None,
        market_grids: Mapping[str, np.ndarray | None] | None = None,
        closed: Sequence[str] = (),
    ) -> list[str]:
        """Trade these markets too (rolling listings; each one the paper client knows).

        Called off the per-tick path (the wiring's market sync).  A new market starts like
        the ones the actor started with: its first valid book opens its segment and is a
        decision; the observation kernel and the order rule are the same.

        Args:
            tickers: markets to add (ones already traded are ignored).
            market_times: ticker -> (open_ms, close_ms) (NO_TS unknown).
            market_grids: ticker -> bool [1001] valid YES prices.
            closed: of these, the markets already closed for new positions.

        Returns:
            The tickers added.
        """
        new = [t for t in dict.fromkeys(tickers) if t not in self.index_of_ticker]
        if not new:
            return []
        self._append(new, market_times or {}, market_grids or {})
        for t in closed:
            i = self.index_of_ticker.get(t)
            if i is not None:
                self.closed[i] = True
        log.info("actor: trading %d new market(s): %s", len(new), ", ".join(new[:5]))
        return new

    # ================================================================== properties
    @property
    def model(self) -> LoadedModel:
        """The model trading now."""
        return self._live.model

    @property
    def episode_id(self) -> int:
        return self._live.episode_id

    @property
    def state(self) -> ActorState:
        """RUNNING / REDUCING / HALTED, or STOPPED when not started."""
        return ActorState.STOPPED if self._stopped else self.risk.state

    @property
    def shadow(self) -> LoadedModel | None:
        return None if self._shadow is None else self._shadow.model

    # ================================================================== lifecycle
    async def start(self) -> None:
        """Open the episode, start the interval and kill-switch tasks; decisions begin."""
        if not self._stopped:
            return
        self._live.episode_id = await self._open(self._live.model, shadow=False)
        self._live.started_value = self.total_value()
        # what the account held when trading (re)started: a restart resumes from here
        self.resumed = {t: self.position(t) for t in self.tickers}
        self._stopped = False
        if self.config.tick_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._interval_loop(), name="actor-interval"))
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="actor-watch"))
        if self.risk.state == ActorState.HALTED:
            self._on_halted()
        # books already valid when the actor starts open their segment now (a listener
        # registered after their snapshot would otherwise first decide on a later update)
        meta = self.books.meta
        now = self.clock_ns()
        for i, s in enumerate(self.slots.tolist()):
            if s < meta.shape[0] and meta[s]["valid"] and not self.in_segment[i]:
                self.in_segment[i] = True
                self.last_updates[i] = int(meta[s]["n_updates"])
                self.decide(i, now)
        log.info(
            "actor started: %s on %d markets (%s path), episode %d, state %s, positions %s",
            self.model.label,
            len(self.tickers),
            "fast" if self.model.fast else "torch",
            self.episode_id,
            self.risk.state.name,
            {t: p for t, p in self.resumed.items() if p},
        )

    async def stop(self, status: str = "stopped") -> None:
        """Stop deciding; close the episode(s)."""
        if self._stopped:
            return
        self._stopped = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        await self._close(self._live, status)
        if self._shadow is not None:
            await self._close(self._shadow, status)

    async def _open(self, model: LoadedModel, *, shadow: bool) -> int:
        if self.store is None:
            return 0
        return await self.store.open_episode(model, self.tickers, self.start_cash, shadow)

    async def _close(self, run: _Run, status: str) -> None:
        if self.store is None or not run.episode_id:
            return
        shadow = run is self._shadow
        value = self._shadow_value() if shadow else self.total_value()
        fees = int(self._shadow_pos["fees_paid"].sum()) if shadow else self._fees()
        await self.store.close_episode(
            run.episode_id,
            {"end_value": value, "fees_paid": fees, "n_actions": run.step, "status": status},
        )

    # ================================================================== control (CLI / API)
    def kill(self, reason: str = "kill switch") -> None:
        """Engage the kill switch (sentinel file, survives restarts) and halt now."""
        self.kill_switch.engage(reason)
        if self.risk.halt(f"kill switch: {reason}"):
            self._on_halted()

    def release_kill(self) -> bool:
        """Remove the sentinel (the actor stays HALTED until ``resume``)."""
        return self.kill_switch.release()

    def resume(self) -> None:
        """Back to RUNNING (refused while the kill switch is engaged)."""
        self.risk.resume()

    def check_model(self, new: LoadedModel) -> str | None:
        """None if ``new`` may replace the running model, else why not."""
        return self.identity.mismatch(new.identity)

    def switch_model(self, new: LoadedModel, episode_id: int | None = None) -> str | None:
        """Swap to ``new`` now (between two decisions); returns the refusal message or None.

        Args:
            new: the loaded candidate (``load_model``; loaded off the hot path).
            episode_id: its episode (opened by the caller beforehand; None = keep numbering).
        """
        problem = self.check_model(new)
        if problem:
            msg = (
                f"refused {new.label} for {self.model.label}: {problem};"
                f" {self.model.label} keeps trading"
            )
            log.error(msg)
            self.refusals.append(msg)
            return msg
        old = self._live
        self._previous = old.model
        self._live = _Run(new, episode_id if episode_id is not None else old.episode_id)
        self._live.started_value = self.total_value()
        self._rules = OrderRules(new.env_config.get("env", {}))
        self.counts["swaps"] += 1
        log.info("actor: %s -> %s", old.model.label, new.label)
        if episode_id is not None and episode_id != old.episode_id:
            self._spawn(self._close(old, "swapped"))
        return None

    async def switch_to(self, new: LoadedModel) -> str | None:
        """Open the new version's episode, then swap (the swap itself is synchronous)."""
        problem = self.check_model(new)
        if problem:
            return self.switch_model(new)  # records and returns the refusal
        ep = await self._open(new, shadow=False) if not self._stopped else 0
        return self.switch_model(new, ep or None)

    async def rollback(self) -> str | None:
        """Swap back to the model that ran before the last switch."""
        if self._previous is None:
            return "no previous model to roll back to"
        return await self.switch_to(self._previous)

    async def set_shadow(self, candidate: LoadedModel | None) -> str | None:
        """Run ``candidate`` in shadow (or stop shadowing with None); refusal message or None."""
        if self._shadow is not None:
            await self._close(self._shadow, "shadow ended")
            self._shadow = None
        if candidate is None:
            return None
        problem = self.check_model(candidate)
        if problem:
            msg = f"refused shadow {candidate.label}: {problem}"
            self.refusals.append(msg)
            return msg
        self._shadow_pos[:] = 0
        self._shadow_pos["cash"] = 0
        self._shadow_rules = OrderRules(candidate.env_config.get("env", {}))
        self._shadow = _Run(candidate, await self._open(candidate, shadow=True))
        return None

    def subscribe(self, maxsize: int | None = None) -> asyncio.Queue[dict[str, Any]]:
        """An action stream: every decision as a dict; a full queue drops (counted)."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize or self.config.subscriber_queue)
        self._subscribers.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        if q in self._subscribers:
            self._subscribers.remove(q)

    # ================================================================== accounts
    def _paper_positions(self) -> np.ndarray:
        return self.paper.positions

    def position(self, ticker: str) -> int:
        """Signed position of ``ticker`` (count units) in the paper account."""
        slot = int(self.slots[self.tickers.index(ticker)])
        pos = self._paper_positions()
        return int(pos[slot]["position"]) if slot < pos.shape[0] else 0

    def _consumed_of(self, slot: int) -> np.ndarray:
        """Liquidity state the order rule and the valuation use for market ``slot``."""
        return self._liq

    def _fill_acct(self, i: int) -> None:
        """Market ``i``'s sub-account: the paper position record, cash from start_cash."""
        pos = self._paper_positions()
        slot = int(self.slots[i])
        if slot < pos.shape[0]:
            self._acct[0] = pos[slot]
        else:
            self._acct[0] = np.zeros((), dtype=POSITION_DTYPE)
        self._acct[0]["cash"] += self.start_cash

    def _value_of(self, acct: np.ndarray, i: int, rules: OrderRules, depth: bool = False) -> int:
        """Cash + open position value (the env's valuation) of ``acct`` in market ``i``.

        ``depth=True``: value over the depth the current decision already read.
        """
        from core.account import position_value
        from core.book import book_top_k

        slot = int(self.slots[i])
        if depth:
            px, qty = self._px, self._qty
        else:
            px, qty = self._px_v, self._qty_v
            book_top_k(self.books.qty, self.books.best, slot, px.shape[1], px, qty)
        v = position_value(
            int(acct[0]["position"]), px, qty, self._consumed_of(slot), rules.fees, rules.mark_mode
        )
        return int(acct[0]["cash"]) + int(v)

    def market_value(self, i: int) -> int:
        """Market ``i``'s sub-account value now (money)."""
        self._fill_acct(i)
        return self._value_of(self._acct, i, self._rules)

    def total_value(self) -> int:
        """Sum of the markets' sub-account values (money); starts at start_cash x markets."""
        return sum(self.market_value(i) for i in range(len(self.tickers)))

    def _exposure(self) -> int:
        pos = self._paper_positions()
        idx = self.slots[self.slots < pos.shape[0]]
        return int(pos["cost_basis"][idx].sum())

    def _fees(self) -> int:
        pos = self._paper_positions()
        idx = self.slots[self.slots < pos.shape[0]]
        return int(pos["fees_paid"][idx].sum())

    def _shadow_value(self) -> int:
        rules = self._shadow_rules or self._rules
        total = 0
        for i in range(len(self.tickers)):
            acct = self._shadow_pos[i : i + 1].copy()
            acct["cash"] += self.start_cash
            total += self._value_of(acct, i, rules)
        return total

    def on_lifecycle(self, ev: Any) -> None:
        """market_lifecycle_v2 (node listener): close times move; closed markets stop opening.

        A ``close_date_updated`` / ``created`` event sets the market's close time (the close
        guard and time-to-close follow it); ``deactivated``, ``determined`` and ``settled``
        close the market for new positions (only reducing orders pass the risk gate).
        """
        i = self.index_of_ticker.get(ev.ticker)
        if i is None:
            return
        if getattr(ev, "close_ts_ms", NO_TS) > 0:
            self.close_ms[i] = int(ev.close_ts_ms)
        if getattr(ev, "open_ts_ms", NO_TS) > 0:
            self.open_ms[i] = int(ev.open_ts_ms)
        if ev.event_type in ("deactivated", "determined", "settled"):
            self.closed[i] = True
        elif ev.event_type == "activated":
            self.closed[i] = False

    # ================================================================== ticks
    def on_books(self, slots: np.ndarray) -> None:
        """The live node's book listener: decide on every market whose tick is due."""
        if self._stopped or slots.shape[0] == 0:
            return
        recv = self.clock_ns()
        idx_of = self.index_of_slot
        seen: set[int] = set()
        meta = self.books.meta
        n_upd = self.config.tick_updates
        for s in slots.tolist() if slots.shape[0] > 1 else (int(slots[0]),):
            i = idx_of.get(s)
            if i is None or i in seen:
                continue
            seen.add(i)
            valid = meta[s]["valid"] != 0
            if not valid:
                if self.in_segment[i]:
                    self.in_segment[i] = False
                    self.pending_reset[i] = True
                continue
            n = int(meta[s]["n_updates"])
            if not self.in_segment[i]:  # the update that opened a new clean segment
                self.in_segment[i] = True
                self.last_updates[i] = n
                self.decide(i, recv)
            elif n_upd and n - self.last_updates[i] >= n_upd:
                self.counts["coalesced_updates"] += int(n - self.last_updates[i] - n_upd)
                self.last_updates[i] = n
                self.decide(i, recv)

    def tick_all(self) -> int:
        """Decide on every market whose interval tick is due; returns decisions made."""
        if self._stopped:
            return 0
        now = self.clock_ns()
        due_ns = int(self.config.tick_interval_s * 1e9)
        made = 0
        for i in range(len(self.tickers)):
            if now - self.last_decision_ns[i] >= due_ns:
                made += self.decide(i, now)
        return made

    async def _interval_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval_s)
            self.tick_all()

    async def _watch_loop(self) -> None:
        """Kill-switch poll and loss/drawdown limits, four times a second."""
        while True:
            await asyncio.sleep(0.25)
            before = self.risk.state
            self.risk.poll_kill()
            self.risk.observe_value(self.total_value())
            if self.risk.state == ActorState.HALTED and before != ActorState.HALTED:
                self._on_halted()

    # ================================================================== one decision
    def decide(self, i: int, recv_ns: int) -> int:
        """One decision for market ``i``; returns 1 if the policy was asked, else 0."""
        slot = int(self.slots[i])
        books = self.books
        now = self.clock_ns()
        reset = bool(self.pending_reset[i])
        exch_ts = int(books.meta[slot]["last_exch_ts"])
        receipt = exch_ts == NO_TS
        if receipt:  # a snapshot without exchange time: its receipt, as datasets do
            exch_ts = int(books.meta[slot]["last_recv_ts"]) // 1_000_000
        # a book is known no earlier than the one before it: time runs forward within a
        # segment (datasets take the running maximum the same way)
        if reset or exch_ts > self.seg_ts_max[i]:
            self.seg_ts_max[i] = exch_ts
            self.seg_ts_receipt[i] = receipt
        exch_ts = int(self.seg_ts_max[i])
        from_receipt = bool(self.seg_ts_receipt[i])
        if reset:
            self.seg_first_ms[i] = exch_ts
        o_ms = int(self.open_ms[i]) if self.open_ms[i] != NO_TS else int(self.seg_first_ms[i])
        ttc = ttc_fraction(o_ms, int(self.close_ms[i]), exch_ts)
        self._fill_acct(i)
        max_age = int(self.config.max_staleness_s * 1e9)
        rules = self._rules
        st, _mid, _value, h = prepare_decision(
            books.qty, books.best, books.meta, slot, now, max_age, self.hist, self.hist_n, i,
            reset, ttc, self._acct, self.start_cash, self._consumed_of(slot), rules.fees,
            rules.mark_mode, self._obs, self._px, self._qty,
        )  # fmt: skip
        if st != DS_OK:
            self.counts[f"skip_{DS_NAMES[st]}"] += 1
            return 0
        self.pending_reset[i] = False
        self.last_decision_ns[i] = now
        run = self._live
        policy = run.model.policy
        if policy.decide(self._obs) != POLICY_OK:
            self.counts["bad_obs"] += 1
            return 0
        self.counts["decisions"] += 1
        shadow = self._shadow
        if shadow is not None:
            self._decide_shadow(i, slot, shadow, h, exch_ts, now)
        rec = self._rec[0]
        rec["probs"][:] = 0
        n_probs = min(policy.probs.shape[0], ACTION_PROBS_MAX)
        rec["probs"][:n_probs] = policy.probs[:n_probs]
        rec["n_probs"] = n_probs
        dims = policy.actions
        action = int(dims[0])
        size, slip, size_idx, slip_idx = self._rules.size_slip(dims)
        rec["action"], rec["size_idx"], rec["slip_idx"] = action, size_idx, slip_idx
        rec["count"] = rec["filled"] = rec["fee"] = 0
        rec["price"], rec["side"], rec["order_action"] = NO_PRICE, -1, -1
        rec["reject"], rec["risk"] = REJ_NONE, RiskReason.OK
        status = AS_HOLD
        if action != ACT_HOLD:
            status = self._execute(i, slot, action, size, slip, rec, now, exch_ts)
        run.step += 1
        self._finish_record(rec, run, i, slot, h, exch_ts, now, recv_ns, status)
        if self.trace is not None:
            self.trace.append(
                (i, exch_ts, self._obs.copy(), dims.copy(), int(rec["filled"]), from_receipt)
            )
        return 1

    def _execute(  # noqa: PLR0917 -- the decision's context, positionally
        self, i: int, slot: int, action: int, size: int, slip: int, rec: Any, now: int, exch_ts: int
    ) -> int:
        from core.orders import action_to_order

        position = int(self._acct[0]["position"])
        rules = self._rules
        side, act, limit, count, reject = action_to_order(
            action, position, size, rules.max_position, slip, self._px, self._qty, self._liq
        )
        if reject == REJ_NONE and count > 0:
            limit = self._on_grid(i, side, act, limit)
        rec["side"], rec["order_action"], rec["price"] = side, act, limit
        if reject != REJ_NONE or count <= 0 or limit == NO_PRICE:
            rec["reject"] = reject
            self.counts["masked"] += 1
            return AS_MASKED
        secs_to_close = None
        if self.closed[i]:
            secs_to_close = 0.0  # the market closed: only reducing orders
        elif self.close_ms[i] != NO_TS:
            secs_to_close = (int(self.close_ms[i]) - exch_ts) / 1000.0
        cost = count * (limit if act == ORDER_BUY else PRICE_MAX - limit) // 10
        exposure = self._exposure() if self.config.risk.max_exposure else 0
        allowed, why = self.risk.check(
            position, side, act, count, exposure, cost, secs_to_close, now / 1e9
        )
        if allowed <= 0:
            rec["risk"] = why
            self.counts["risk_refused"] += 1
            return AS_RISK
        rec["risk"] = why
        rec["count"] = allowed
        pos = self._paper_positions()
        vol0, fee0 = int(pos[slot]["volume"]), int(pos[slot]["fees_paid"])
        try:
            self.paper.submit(self.tickers[i], side, act, limit, allowed, tif=TIF_IOC)
        except KalshiApiError as exc:
            rec["reject"] = -1
            self.counts["rejected"] += 1
            log.debug("paper rejected %s: %s", self.tickers[i], exc)
            return AS_REJECTED
        pos = self._paper_positions()
        filled = int(pos[slot]["volume"]) - vol0
        rec["filled"] = filled
        rec["fee"] = int(pos[slot]["fees_paid"]) - fee0
        self.counts["orders"] += 1
        if filled:
            self.counts["fills"] += 1
        return AS_SENT

    def _on_grid(self, i: int, side: int, act: int, limit: int) -> int:
        """``limit`` moved to the market's price grid, never more aggressive (NO_PRICE: none)."""
        grid = self.grids[i]
        if grid is None:
            return limit
        step = -1 if act == ORDER_BUY else 1  # a buy may only pay less, a sell get more
        p = limit
        while 0 < p < PRICE_MAX:
            if grid[p if side == SIDE_YES else PRICE_MAX - p]:
                return p
            p += step
        return NO_PRICE

    def _finish_record(  # noqa: PLR0917 -- the decision's context, positionally
        self, rec: Any, run: _Run, i: int, slot: int, h: Any, exch_ts: int,
        now: int, recv_ns: int, status: int,
    ) -> None:  # fmt: skip
        self._fill_acct(i)
        rec["episode_id"] = run.episode_id
        rec["step"] = run.step
        rec["ts"] = now
        rec["exch_ts"] = exch_ts
        rec["obs_hash"] = h
        rec["market"] = slot
        rec["model_version"] = run.model.version
        rec["status"] = status
        rec["position"] = self._acct[0]["position"]
        rec["cash"] = self._acct[0]["cash"]
        rec["value"] = self._value_of(self._acct, i, self._rules, depth=True)
        done = self.clock_ns()
        rec["latency_ns"] = done - (
            recv_ns if recv_ns else int(self.books.meta[slot]["last_recv_ts"])
        )
        if status == AS_HOLD:
            self.counts["held"] += 1
        if status in (AS_SENT, AS_REJECTED):
            lat = self.latency_ns
            lat.append(int(rec["latency_ns"]))
            if len(lat) > 4096:
                del lat[:2048]
        if not self.ring.push(self._rec):
            self.counts["ring_overflow"] += 1
        if self._subscribers:
            self._publish(rec, i)

    def _decide_shadow(  # noqa: PLR0917 -- the decision's context, positionally
        self, i: int, slot: int, run: _Run, h: Any, exch_ts: int, now: int
    ) -> None:
        """The candidate decides on the same book with its own sub-account (never trades).

        Its would-be fills are the engine's taker walk (``core.matching.taker_match``) on
        the book the live model saw, without liquidity memory across decisions.
        """
        from core.account import position_value
        from core.features import account_features
        from core.liquidity import liquidity_clear
        from core.matching import taker_match
        from core.orders import action_to_order

        rules = self._shadow_rules or self._rules
        acct = self._shadow_pos[i : i + 1]
        acct["cash"] += self.start_cash
        try:
            obs = self._obs.copy()
            v = position_value(
                int(acct[0]["position"]), self._px, self._qty, self._sh_liq, rules.fees,
                rules.mark_mode,
            )  # fmt: skip
            account_features(acct, v, self.start_cash, obs[N_MARKET_FEATURES:])
            pol = run.model.policy
            if pol.decide(obs) != POLICY_OK:
                return
            rec = np.zeros(1, dtype=DECISION_DTYPE)
            r = rec[0]
            action = int(pol.actions[0])
            size, slip, size_idx, slip_idx = rules.size_slip(pol.actions)
            r["action"], r["size_idx"], r["slip_idx"] = action, size_idx, slip_idx
            r["price"], r["side"], r["order_action"] = NO_PRICE, -1, -1
            if action != ACT_HOLD:
                liquidity_clear(self._sh_liq)
                side, act, limit, count, reject = action_to_order(
                    action, int(acct[0]["position"]), size, rules.max_position, slip, self._px,
                    self._qty, self._sh_liq,
                )  # fmt: skip
                r["side"], r["order_action"], r["price"], r["reject"] = side, act, limit, reject
                if reject == REJ_NONE and count > 0:
                    o = self._sh_order
                    o[:] = 0
                    o[0]["side"], o[0]["action"], o[0]["price"] = side, act, limit
                    o[0]["count"] = o[0]["remaining"] = count
                    taker_match(
                        o, acct, self._px, self._qty, self._sh_liq, rules.fees, rules.lot,
                        exch_ts, self._sh_fills,
                    )  # fmt: skip
                    r["count"], r["filled"], r["fee"] = count, o[0]["filled"], o[0]["fees"]
            n_probs = min(pol.probs.shape[0], ACTION_PROBS_MAX)
            r["probs"][:n_probs] = pol.probs[:n_probs]
            r["n_probs"] = n_probs
            run.step += 1
            r["episode_id"], r["step"], r["ts"], r["exch_ts"] = (
                run.episode_id,
                run.step,
                now,
                exch_ts,
            )
            r["obs_hash"], r["market"], r["model_version"] = h, slot, run.model.version
            r["status"] = AS_SHADOW
            r["position"], r["cash"] = acct[0]["position"], acct[0]["cash"]
            r["value"] = self._value_of(acct, i, rules, depth=True)
        finally:
            acct["cash"] -= self.start_cash
        self.counts["shadow_decisions"] += 1
        if not self.ring.push(rec):
            self.counts["ring_overflow"] += 1

    def _publish(self, rec: Any, i: int) -> None:
        msg = {
            "episode_id": int(rec["episode_id"]),
            "step": int(rec["step"]),
            "ts": int(rec["ts"]),
            "market": self.tickers[i],
            "model": self.model.label,
            "action": int(rec["action"]),
            "status": int(rec["status"]),
            "side": int(rec["side"]),
            "order_action": int(rec["order_action"]),
            "price": int(rec["price"]),
            "count": int(rec["count"]),
            "filled": int(rec["filled"]),
            "fee": int(rec["fee"]),
            "position": int(rec["position"]),
            "value": int(rec["value"]),
            "probs": [float(x) for x in rec["probs"][: int(rec["n_probs"])]],
            "obs": self._obs.tolist(),  # the observation decided on (dashboard: feature view)
            "risk": RiskReason(int(rec["risk"])).name,
            "state": self.state.name,
        }
        for q in self._subscribers:
            try:
                q.put_nowait(msg)
            except asyncio.QueueFull:
                self.counts["stream_dropped"] += 1

    # ================================================================== halting
    def _on_halted(self) -> None:
        """Cancel every resting order of the account; flatten when configured."""
        n = self.cancel_all()
        log.warning("actor HALTED (%s): %d resting orders canceled", self.risk.reason, n)
        if self.config.risk.flatten_on_halt:
            self.flatten()
        for fn in self.on_halt:
            fn(self.risk.reason)

    def cancel_all(self) -> int:
        """Cancel every resting paper order of the actor's markets; returns how many."""
        n = 0
        for o in self.paper.get_orders(status="resting")["orders"]:
            try:
                self.paper.cancel_order_now(o["order_id"])
                n += 1
            except KalshiApiError as exc:
                log.warning("cancel of %s failed: %s", o.get("order_id"), exc)
        return n

    def flatten(self) -> int:
        """Sell every held position at the bid (IOC, whatever fills); returns orders sent."""
        from kalshi_rl.trade.risk import flatten_order

        sent = 0
        for i, t in enumerate(self.tickers):
            order = flatten_order(self.position(t))
            if order is None or not self.books.valid(int(self.slots[i])):
                continue
            side, act, count = order
            bid = int(self.books.best[int(self.slots[i]), side])
            if bid == NO_PRICE:
                continue
            try:
                self.paper.submit(t, side, act, max(bid - 50, 1), count, tif=TIF_IOC)
                sent += 1
            except KalshiApiError as exc:
                log.warning("flatten of %s failed: %s", t, exc)
        return sent

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, t: asyncio.Task[Any]) -> None:
        if t in self._tasks:
            self._tasks.remove(t)

    # ================================================================== stats
    def latency_quantiles_us(self) -> dict[str, float]:
        """p50/p99 of book-received -> order-answered over the recent orders (us)."""
        if not self.latency_ns:
            return {"p50": 0.0, "p99": 0.0}
        a = np.asarray(self.latency_ns, dtype=np.float64) / 1e3
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}

    def stats(self) -> dict[str, Any]:
        """What the dashboard shows about the actor (JSON-able)."""
        return {
            "state": self.state.name,
            "model": self.model.label,
            "model_id": self.model.model_id,
            "fast_path": self.model.fast,
            "fallback_reason": self.model.fallback_reason,
            "previous": None if self._previous is None else self._previous.label,
            "shadow": None if self._shadow is None else self._shadow.model.label,
            "episode_id": self.episode_id,
            "markets": len(self.tickers),
            "counts": dict(self.counts),
            "risk": self.risk.stats(),
            "latency_us": self.latency_quantiles_us(),
            "refusals": self.refusals[-5:],
            "ring": self.ring.stats(),
            "value": self.total_value(),
        }
