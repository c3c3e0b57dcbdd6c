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
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

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
    RING_HEAD,
    TIF_IOC,
)
from core.features import N_FEATURES, N_MARKET_FEATURES
from core.fees import fee_schedule
from core.liquidity import new_liquidity
from core.paper_book import TAKER_POS
from core.policy import FastPolicy
from core.ring import Ring
from kalshi_rl.errors import ConfigError, KalshiApiError, LiveTradingRefused, PolicyError
from kalshi_rl.tasks import stop_tasks
from kalshi_rl.trade.decide import (
    C_LEN,
    COUNT_NAMES,
    DO_HOLD,
    DO_ORDER,
    DS_NAMES,
    DS_OK,
    HDR_COUNT,
    HDR_EPISODE,
    HDR_EXCH_TS,
    HDR_FEE,
    HDR_FILLED,
    HDR_HASH,
    HDR_LEN,
    HDR_REJECT,
    HDR_RISK,
    HDR_STATUS,
    HDR_STEP,
    HDR_TS,
    HDR_VERSION,
    OUT_ACTION,
    OUT_ALLOWED,
    OUT_EXCH_TS,
    OUT_FROM_RECEIPT,
    OUT_HASH,
    OUT_LEN,
    OUT_LIMIT,
    OUT_N_FILLS,
    OUT_PAPER,
    OUT_PUSHED,
    OUT_RECS,
    OUT_RING_AT,
    OUT_RISK,
    OUT_SIDE,
    PH_AFTER,
    PH_FAST,
    PH_OBSERVE,
    PH_TICK,
    RULE_LEN,
    RULE_MARK_MODE,
    RULE_MAX_POSITION,
    RULE_MULTI,
    RULE_ORDER_SIZE,
    RULE_SLIPPAGE,
    STEP_DONE,
    STEP_SLOW,
    TICK_IDLE,
    decide_observe,
    decide_order,
    finish_record,
    new_step_ctx,
    risk_check,
    tick,
)
from kalshi_rl.trade.fastcall import FastCall
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
        execution: 'immediate' (an order goes to the paper client at the book it was
            decided on) or 'env' (as the model's env executes it: it arrives after the
            env's entry latency in exchange time and executes at the last decision point
            not later than that, i.e. at the book of the last update of the same
            millisecond with zero latency; while it is in flight and until its ack no
            other order goes; see docs/actor.md, Parity).
    """

    mode: str = "paper"
    tick_updates: int = 1
    tick_interval_s: float = 0.0
    max_staleness_s: float = 30.0
    ring_capacity: int = 1 << 16
    start_cash: int | None = None
    risk: RiskConfig = field(default_factory=RiskConfig)
    subscriber_queue: int = 10_000
    execution: str = "immediate"

    def __post_init__(self) -> None:
        refuse_live(self.mode)
        if self.execution not in ("immediate", "env"):
            raise ConfigError(f"execution must be 'immediate' or 'env', got {self.execution!r}")
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
class _Pending:
    """An order in flight (env execution): what to send, when, and the book it meets."""

    side: int
    action: int
    limit: int
    count: int
    sent_ms: int  # exchange time of the decision that sent it (the dataset's ts)
    step: int  # the decision step that sent it
    px: np.ndarray  # the view of the last decision point not later than its arrival
    qty: np.ndarray
    liq: np.ndarray  # the paper client's consumption in the market at that point


@dataclass
class _Run:
    """A model with its episode (live or shadow)."""

    model: LoadedModel
    episode_id: int
    step: int = 0
    started_value: int = 0


class Counts(MutableMapping[str, int]):
    """The actor's counters: an int64 array the tick kernel writes, read as a dict.

    ``counts["orders"]``, ``counts["orders"] += 1``, ``dict(counts)`` work as on a dict;
    the keys are fixed (``kalshi_rl.trade.decide.COUNT_NAMES``).
    """

    __slots__ = ("arr",)
    _index: ClassVar[dict[str, int]] = {name: k for k, name in enumerate(COUNT_NAMES)}

    def __init__(self) -> None:
        self.arr = np.zeros(C_LEN, dtype=np.int64)

    def __getitem__(self, key: str) -> int:
        return int(self.arr[self._index[key]])

    def __setitem__(self, key: str, value: int) -> None:
        self.arr[self._index[key]] = value

    def __delitem__(self, key: str) -> None:
        raise TypeError("the actor's counters cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(COUNT_NAMES)

    def __len__(self) -> int:
        return C_LEN

    def __repr__(self) -> str:
        return repr(dict(self))


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
        # the env's latency (ms); a uniform range is taken at its lower end (see docs)
        self.entry_ms = int(env.get("entry_latency_ms", (0, 0))[0])
        self.ack_ms = int(env.get("ack_latency_ms", (0, 0))[0])
        # the same, as the decide kernels take them (kalshi_rl.trade.decide RULE_*)
        self.packed = np.zeros(RULE_LEN, dtype=np.int64)
        self.packed[RULE_MULTI] = self.multi
        self.packed[RULE_ORDER_SIZE] = self.order_size
        self.packed[RULE_SLIPPAGE] = self.slippage
        self.packed[RULE_MAX_POSITION] = self.max_position
        self.packed[RULE_MARK_MODE] = self.mark_mode
        self.slip_arr = np.asarray(self.slip_choices, dtype=np.int64)
        self.size_arr = np.asarray(self.size_choices, dtype=np.int64)

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
    # env execution: books updated at or after their market's close (no decision there)
    after_close_books: int = 0

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
        self._px_v = np.zeros((N_SIDES, DEFAULT_TOP_K), dtype=np.int16)
        self._qty_v = np.zeros((N_SIDES, DEFAULT_TOP_K), dtype=np.int64)
        self._sh_order = np.zeros(1, dtype=ORDER_DTYPE)
        self._sh_fills = np.zeros(DEFAULT_TOP_K, dtype=FILL_DTYPE)
        self._sh_liq = new_liquidity(1)
        self._rec = np.zeros(1, dtype=DECISION_DTYPE)
        self._out = np.zeros(OUT_LEN, dtype=np.int64)  # the decide kernels' scalars out
        self._hdr = np.zeros(HDR_LEN, dtype=np.int64)  # finish_record's scalars in
        self._any_grid = np.ones(PRICE_MAX + 1, dtype=np.bool_)  # a market without a grid
        self._best_src: np.ndarray | None = None  # books.best, and its plain-array view
        self._meta_src: np.ndarray | None = None  # books.meta, and views of two fields
        self._meta_valid = self._meta_n = np.zeros(0, dtype=np.int64)
        self._best = np.zeros((0, N_SIDES), dtype=np.int32)
        self._max_age_ns = int(self.config.max_staleness_s * 1e9)
        self._env_exec = self.config.execution == "env"
        self._skip_keys = tuple(f"skip_{n}" for n in DS_NAMES)
        # the tick kernel, entered without per-call type dispatch (see FastCall), and its
        # state (``_ctx_build``; None: rebuild before the next decision)
        self._k_tick = FastCall(tick)
        self._ctx: Any = None
        self._ctx_books: np.ndarray | None = None  # books.qty the context was built on
        self._ctx_paper = -1  # the paper client's taker_layout it was built on
        self._ctx_fast = False
        self._ctx_policy: Any = None  # the policy it was built for
        self._grid_c: dict[int, tuple[Any, np.ndarray]] = {}  # i -> (grid, its C bool copy)
        # env execution (config.execution == 'env'): orders in flight, acks, last steps
        self._pending: dict[int, _Pending] = {}
        self._busy_until: dict[int, int] = {}
        self._last_step: dict[int, int] = {}
        self._last_view: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # i -> (px, qty)
        self.ring = Ring(DECISION_DTYPE, self.config.ring_capacity)
        self._ring_latency = self.ring.buf["latency_ns"]  # int64 views: cheap to write
        self._rec_latency = self._rec["latency_ns"]
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
        self.counts = Counts()
        self.latency_ns: list[int] = []  # book received -> order answered, last 4096
        self.on_halt: list[Callable[[str], None]] = []
        # parity checks: (market index, exch_ts, observation, action dims, filled, ts from
        # receipt) per decision when set to a list (None in production: nothing is kept)
        self.trace: list[tuple[int, int, np.ndarray, np.ndarray, int, bool]] | None = None
        self.resumed: dict[str, int] = {}
        # replays: (ticker, n-th snapshot) -> receipt ms of the recorded snapshot, for books
        # without exchange time (the replay's own receipt is not the recording's; NO_TS: own)
        self.receipt_ms: Callable[[str, int], int] | None = None
        self._warm()

    def _warm(self) -> None:
        """Compile or load the hot path's kernels now (construction is off the hot path)."""
        if self._env_exec:
            return
        ctx = self._ctx_build()
        paper = self.paper
        self._k_tick.prepare(
            ctx, PH_FAST, 0, 0, 0, 0, 1, 0, 0, True, True, paper._n, 0, paper._n_fills, 1
        )
        warm_book = getattr(paper, "warm_on_book", None)
        if warm_book is not None:
            warm_book()

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
        self._ctx = None  # the step context holds these views

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
        await stop_tasks(self._tasks)
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
        self._ctx = None  # its policy and rules are in the step context
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
        """Liquidity state the order rule and the valuation use for market ``slot``.

        The paper client's own (what our orders took and the book still shows), as the env
        uses its account's: the order rule skips what is taken, the valuation walks what
        is left.
        """
        return self.paper.liquidity(slot)

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

    def value_at_last_decision(self, i: int) -> int:
        """Market ``i``'s sub-account value (money) with its open position marked at the
        book of its last decision point (env execution), as the env values an episode that
        ends unsettled at its last row; the book now may have moved since."""
        from core.account import position_value

        view = self._last_view.get(i)
        if view is None:
            return self.market_value(i)
        self._fill_acct(i)
        rules, acct = self._rules, self._acct
        v = position_value(
            int(acct[0]["position"]), view[0], view[1], self._consumed_of(int(self.slots[i])),
            rules.fees, rules.mark_mode,
        )  # fmt: skip
        return int(acct[0]["cash"]) + int(v)

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
        """The live node's book listener: decide on every market whose tick is due.

        One kernel call per changed market (``kalshi_rl.trade.decide.tick``: the tick test,
        then the decision); env execution keeps the Python tick test (``_tick``).
        """
        if self._stopped or slots.shape[0] == 0:
            return
        recv = self.clock_ns()
        idx_of = self.index_of_slot
        if self._env_exec:
            meta = self.books.meta
            if meta is not self._meta_src:  # field views of the meta array (cheaper reads)
                self._meta_src = meta
                self._meta_valid, self._meta_n = meta["valid"], meta["n_updates"]
        if slots.shape[0] == 1:  # the feed's usual batch: one market
            s = int(slots[0])
            i = idx_of.get(s)
            if i is not None:
                if self._env_exec:
                    self._tick(i, s, recv)
                else:
                    self._run(i, s, recv, PH_TICK)
            return
        seen: set[int] = set()
        for s in slots.tolist():
            i = idx_of.get(s)
            if i is None or i in seen:
                continue
            seen.add(i)
            if self._env_exec:
                self._tick(i, s, recv)
            else:
                self._run(i, s, recv, PH_TICK)

    def _tick(self, i: int, s: int, recv: int) -> None:
        # market i (book slot s) changed: decide if its tick is due
        if not self._meta_valid[s]:
            if self.in_segment[i]:
                self.in_segment[i] = False
                self.pending_reset[i] = True
                if i in self._pending:  # the segment ended: as the env does at its last row
                    self._flush_pending(i)
            return
        n = int(self._meta_n[s])
        if not self.in_segment[i]:  # the update that opened a new clean segment
            self.in_segment[i] = True
            self.last_updates[i] = n
            self.decide(i, recv)
            return
        n_upd = self.config.tick_updates
        last = int(self.last_updates[i])
        if n_upd and n - last >= n_upd:
            self.counts["coalesced_updates"] += n - last - n_upd
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
        """One decision for market ``i``; returns 1 if the policy was asked, else 0.

        Fast path: one kernel call (``kalshi_rl.trade.decide.tick``: observation, policy,
        order rule, risk gate, the paper client's taker kernel, the decision record pushed
        to the ring, the counters); Python books the paper's order and stamps the latency.
        The torch fallback runs ``tick``'s observation phase, the torch policy, then its
        PH_AFTER phase (the same kernels).  Orders the paper client must handle in Python
        (``PaperClient.taker_ready`` False) go through ``submit_taker``.
        """
        if self._env_exec:
            return self._decide_env(i, recv_ns)
        return self._run(i, int(self.slots[i]), recv_ns, 0)

    def _ctx_build(self) -> Any:
        """The tick kernel's ``StepCtx`` over the current arrays (books, markets, model,
        paper client); rebuilt when any of them is replaced."""
        books, paper, rules, ring, risk = self.books, self.paper, self._rules, self.ring, self.risk
        policy = self.model.policy
        fast = type(policy) is FastPolicy
        if fast:
            pol = policy.step_args
        else:  # torch decides outside: its actions/probs, placeholders for the MLP's arrays
            f0, i0 = np.zeros(1, dtype=np.float64), np.zeros(1, dtype=np.int64)
            pol = (f0, i0, i0, i0, 0, i0, policy.actions, policy.probs, f0, f0, f0)
        if books.best is not self._best_src:
            self._best_src, self._best = books.best, books.best.view(np.ndarray)
        paper._sync_capacity()
        n = len(self.tickers)
        grids = np.ones((n, PRICE_MAX + 1), dtype=np.bool_)
        has_grid = np.zeros(n, dtype=np.bool_)
        p_grids = np.ones((n, PRICE_MAX + 1), dtype=np.bool_)
        for i in range(n):
            g = self._grid_of(i)
            if g is not None:
                grids[i], has_grid[i] = g, True
            pg = paper.grid_of(int(self.slots[i]))
            if pg is not None:
                p_grids[i] = pg
        d = paper.taker_dummy()  # the paper kernel's arrays (as taker_prepare's)
        ctx = new_step_ctx(  # type: ignore[call-arg]
            books.qty, self._best, books.meta, self.hist, self.hist_n, self.pending_reset,
            self.seg_ts_max, self.seg_ts_receipt, self.seg_first_ms, self.open_ms, self.close_ms,
            self.closed, self.slots, self.last_updates, self.in_segment, self.last_decision_ns,
            grids, has_grid, self._acct, self._obs, self._px, self._qty, self._out, self._rec,
            self._hdr, self.counts.arr, *pol, rules.packed, rules.slip_arr, rules.size_arr,
            rules.fees, risk.limits, risk.sent, risk.sent_ctl, ring.buf, ring.ctl,
            d[0], d[1], d[2], d[3], d[4], d[5], d[6], p_grids, d[9], d[11], d[12], d[13], d[14],
            d[17], d[18], d[19], d[20], d[21], d[22], d[23], d[24], self._max_age_ns,
            self.start_cash, self.config.tick_updates,
        )  # fmt: skip
        self._ctx, self._ctx_fast, self._ctx_policy = ctx, fast, policy
        self._ctx_books, self._ctx_paper = books.qty, paper.taker_layout
        self._k_tick.reset()  # a new context may have other types
        return ctx

    def _run(self, i: int, slot: int, recv_ns: int, tick_flag: int) -> int:
        """Market ``i``: (``tick_flag`` PH_TICK: if its tick is due) one decision.

        One ``tick`` kernel call (fast path), or observe / torch / the rest (fallback).
        Returns 1 if the policy was asked (a decision recorded), else 0.
        """
        paper = self.paper
        paper_ok = paper.taker_ready(slot)  # (may grow the paper's arrays: checked next)
        ctx = self._ctx
        run = self._live
        model = run.model
        if (
            ctx is None
            or paper.taker_layout != self._ctx_paper
            or self.books.qty is not self._ctx_books
            or model.policy is not self._ctx_policy
        ):
            ctx = self._ctx_build()
        now = self.clock_ns()
        push = self._shadow is None and self.ring.overflow_pending == 0
        args = (
            i, slot, now, run.episode_id, run.step + 1, model.version, int(self.risk.state),
            paper_ok, push, paper._n, paper._clock(), paper._n_fills, paper._next_rec_id,
        )  # fmt: skip
        k = self._k_tick.entry  # the compiled overload (None: resolve on this call)
        if k is None:
            k = self._k_tick
        if self._ctx_fast:
            st = k(ctx, PH_FAST | tick_flag, *args)
            if st < STEP_DONE or st >= TICK_IDLE:
                return 0  # not due, skipped or a non-finite observation (counted)
        else:
            st = k(ctx, PH_OBSERVE | tick_flag, *args)
            if st != DS_OK:
                return 0
            if model.policy.decide(self._obs) != POLICY_OK:
                self.counts["bad_obs"] += 1
                return 0
            st = k(ctx, PH_AFTER, *args)
        if st == STEP_SLOW:  # the paper client takes the order through Python
            status = self._submit_slow(i, slot, now)
            self._count(status)
            run.step += 1
            self._recorded(i, slot, now, recv_ns, status)
            return 1
        status = st - STEP_DONE
        o = self._out.tolist()
        if status == AS_SENT:
            paper.taker_booked(o[OUT_N_FILLS], o[OUT_RECS])
        elif status == AS_REJECTED:
            self._paper_done(i, slot, status)  # books and names the refusal
        elif status == AS_RISK:
            self.risk.counted(0, o[OUT_RISK])
        run.step += 1
        if (
            not o[OUT_PUSHED]
            or self._shadow is not None
            or self._subscribers
            or self.trace is not None
        ):
            self._recorded(i, slot, now, recv_ns, status)
            return 1
        # the kernel pushed the record: its latency is set in place (as _recorded does)
        latency = self.clock_ns() - (recv_ns or int(self.books.meta[slot]["last_recv_ts"]))
        self._ring_latency[o[OUT_RING_AT]] = latency
        if status in (AS_SENT, AS_REJECTED):
            lat = self.latency_ns
            lat.append(latency)
            if len(lat) > 4096:
                del lat[:2048]
        return 1

    def _recorded(self, i: int, slot: int, now: int, recv_ns: int, status: int) -> None:
        """After the step: shadow, latency, the record pushed (if the kernel did not), streams."""
        out, ring = self._out, self.ring
        if self._shadow is not None:
            self._decide_shadow(
                i, slot, self._shadow, int(out[OUT_HASH]), int(out[OUT_EXCH_TS]), now
            )
        recv = recv_ns if recv_ns else int(self.books.meta[slot]["last_recv_ts"])
        latency = self.clock_ns() - recv
        self._rec_latency[0] = latency
        if out[OUT_PUSHED]:  # the kernel pushed the record: set its latency in place
            self._ring_latency[(int(ring.ctl[RING_HEAD]) - 1) & (ring.capacity - 1)] = latency
        elif not ring.push(self._rec):
            self.counts["ring_overflow"] += 1
        if status in (AS_SENT, AS_REJECTED):
            lat = self.latency_ns
            lat.append(latency)
            if len(lat) > 4096:
                del lat[:2048]
        if self._subscribers:
            self._publish(self._rec[0], i)
        if self.trace is not None:
            self.trace.append(
                (i, int(out[OUT_EXCH_TS]), self._obs.copy(), self.model.policy.actions.copy(),
                 int(self._hdr[HDR_FILLED]), bool(out[OUT_FROM_RECEIPT]))
            )  # fmt: skip

    # ------------------------------------------------------------------ env execution
    def _recv_ms(self, i: int, slot: int) -> int:
        """``receipt_ms``'s time for market ``i``'s current snapshot (NO_TS: its own)."""
        if self.receipt_ms is None:
            return NO_TS
        return int(self.receipt_ms(self.tickers[i], int(self.books.meta[slot]["n_snapshots"])))

    def _book_ts(self, i: int, slot: int) -> int:
        """The time of market ``i``'s last update: its exchange time (a snapshot without
        one: its receipt) -- the time a dataset build compares with the market's close."""
        m = self.books.meta[slot]
        ts = int(m["last_exch_ts"])
        if ts == NO_TS:
            r = self._recv_ms(i, slot)
            ts = int(m["last_recv_ts"]) // 1_000_000 if r == NO_TS else r
        return ts

    def _row_ts(self, i: int, slot: int) -> int:
        """The time the next decision on market ``i`` will have (``decide_observe``'s).

        The book's exchange time (a snapshot without one: its receipt), run forward within
        the segment -- the dataset's ``ts``, the env's clock.
        """
        ts = self._book_ts(i, slot)
        if self.pending_reset[i]:
            return ts
        return max(ts, int(self.seg_ts_max[i]))

    def _decide_env(self, i: int, recv_ns: int) -> int:
        """``decide`` with the env's execution (``ActorConfig.execution == 'env'``).

        A book updated at or after the market's close time is no decision point: a dataset
        build ends the market's segment at such an update (``store.history``, END_CLOSE),
        so the env's episode ended at the decision point before it.  An order still in
        flight executes as at a segment's end (``_flush_pending``); the book is counted in
        ``after_close_books``.
        """
        slot = int(self.slots[i])
        close = int(self.close_ms[i])
        if close != NO_TS and self._book_ts(i, slot) >= close:
            self.after_close_books += 1
            if i in self._pending:
                self._flush_pending(i)
            return 0
        pend = self._pending.get(i)
        if pend is not None and self._row_ts(i, slot) > pend.sent_ms + self._rules.entry_ms:
            # this book is the first later than its arrival: it met the one before (the
            # env's rule, no lookahead on either side); the fill shows in this observation
            self._fill_pending(i)
        books, paper, rules, out = self.books, self.paper, self._rules, self._out
        now = self.clock_ns()
        liq = paper.liquidity(slot)
        grid = self._grid_of(i)
        if books.best is not self._best_src:
            self._best_src, self._best = books.best, books.best.view(np.ndarray)
        st = int(
            decide_observe(
                books.qty, self._best, books.meta, slot, now, self._max_age_ns, self.hist,
                self.hist_n, i, self.pending_reset, self.seg_ts_max, self.seg_ts_receipt,
                self.seg_first_ms, self.open_ms, self.close_ms, paper.taker_dummy()[TAKER_POS],
                self._acct, self.start_cash, liq, rules.fees, rules.mark_mode, self._obs,
                self._px, self._qty, out, self._recv_ms(i, slot),
            )
        )  # fmt: skip
        if st != DS_OK:
            self.counts[self._skip_keys[st]] += 1
            return 0
        self.last_decision_ns[i] = now
        self._last_view[i] = (self._px.copy(), self._qty.copy())
        policy = self.model.policy
        if policy.decide(self._obs) != POLICY_OK:
            self.counts["bad_obs"] += 1
            return 0
        st = int(
            decide_order(
                policy.actions, policy.probs, rules.packed, rules.slip_arr, rules.size_arr,
                self._any_grid if grid is None else grid, grid is not None, self._acct, liq,
                self._px, self._qty, self._rec, out,
            )
        )  # fmt: skip
        hdr = self._hdr
        hdr[HDR_COUNT : HDR_REJECT + 1] = 0
        status = AS_HOLD if st == DO_HOLD else AS_MASKED
        if st == DO_ORDER:
            status = self._send_env(i, int(out[OUT_EXCH_TS]), now)
        run = self._live
        self._count(status)
        run.step += 1
        self._last_step[i] = run.step
        pend = self._pending.get(i)
        if pend is not None:  # not arrived yet: this is the latest book it can meet
            if pend.step == 0:
                pend.step = run.step
            pend.px[:] = self._px
            pend.qty[:] = self._qty
            pend.liq[:] = liq
        hdr[HDR_EPISODE], hdr[HDR_STEP], hdr[HDR_VERSION] = (
            run.episode_id,
            run.step,
            run.model.version,
        )
        hdr[HDR_STATUS], hdr[HDR_TS] = status, now
        hdr[HDR_EXCH_TS], hdr[HDR_HASH] = out[OUT_EXCH_TS], out[OUT_HASH]
        push = self._shadow is None and self.ring.overflow_pending == 0
        out[OUT_PUSHED] = finish_record(
            self._rec, paper.taker_dummy()[TAKER_POS], slot, self._acct, self.start_cash, liq,
            rules.fees, rules.mark_mode, self._px, self._qty, hdr, self.ring.buf,
            self.ring.ctl, push,
        )  # fmt: skip
        self._recorded(i, slot, now, recv_ns, status)
        return 1

    def _send_env(self, i: int, row_ts: int, now: int) -> int:
        """The env's masks, the risk gate, then the order goes in flight (not to the paper yet)."""
        from core.orders import collateral_need

        out, rules, hdr = self._out, self._rules, self._hdr
        side, act, limit, count, position = self._out[2:7].tolist()
        if i in self._pending or row_ts < self._busy_until.get(i, -1):
            return AS_MASKED  # in flight or not acknowledged: the env allows only hold
        size, slip, _, _ = rules.size_slip(self.model.policy.actions)
        if act == ORDER_BUY and count < size:
            return AS_MASKED  # the env masks a buy beyond max_position (it is not clipped)
        if act == ORDER_BUY:
            touch = limit - slip
            if (
                collateral_need(position, side, act, touch, count, rules.fees)
                > self._acct[0]["cash"]
            ):
                return AS_MASKED
        secs = None
        if self.closed[i]:
            secs = 0.0
        elif self.close_ms[i] != NO_TS:
            secs = (int(self.close_ms[i]) - row_ts) / 1000.0
        cost = count * (limit if act == ORDER_BUY else PRICE_MAX - limit) // 10
        exposure = self._exposure() if self.config.risk.max_exposure else 0
        risk = self.risk
        allowed, why = risk_check(
            int(risk.state), risk.limits, risk.sent, risk.sent_ctl, position, side, act, count,
            exposure, cost, math.nan if secs is None else secs, now,
        )  # fmt: skip
        out[OUT_RISK] = hdr[HDR_RISK] = why
        if allowed <= 0:
            return AS_RISK  # counted by _count
        hdr[HDR_COUNT] = allowed
        self._pending[i] = _Pending(
            side, act, limit, allowed, row_ts, 0, self._px.copy(), self._qty.copy(),
            self.paper.liquidity(int(self.slots[i])).copy(),
        )  # fmt: skip
        return AS_SENT

    def _fill_pending(self, i: int, *, refresh: bool = True) -> None:
        """Market ``i``'s order in flight executes at the book it met (``submit_on_view``).

        ``refresh``: what it took then meets the book as it is now, as the env refreshes
        its consumption at the next row (not at a segment's end: there is no next row).
        """
        pend = self._pending.pop(i)
        self._busy_until[i] = pend.sent_ms + self._rules.entry_ms + self._rules.ack_ms
        slot = int(self.slots[i])
        if refresh:  # consumption as it was at that book (the paper has seen the next one)
            self.paper.set_liquidity(slot, pend.liq)
        try:
            res = self.paper.submit_on_view(
                self.tickers[i], pend.side, pend.action, pend.limit, pend.count, pend.px, pend.qty
            )
        except KalshiApiError as exc:
            self.counts["rejected"] += 1
            log.debug("paper rejected %s: %s", self.tickers[i], exc)
            return
        if res["fill_count"] != "0.00":
            self.counts["fills"] += 1
        if refresh:
            self.paper.on_book_update(np.array([slot], dtype=np.int64))

    def _flush_pending(self, i: int) -> None:
        """The segment ended with an order in flight: as the env does at its last row.

        Sent before the last decision point and no later book came: it executes against
        the last one, after that decision's observation (the env books it after the last
        row's observation, ``kalshi_rl.env.kernels``).  Sent at the last decision point
        (the env does not act there; live the actor cannot know it was the last):
        dropped (``counts['dropped_at_end']``).
        """
        pend = self._pending.get(i)
        if pend is None:
            return
        if pend.step == self._last_step.get(i):
            del self._pending[i]
            self.counts["dropped_at_end"] += 1
            return
        self._fill_pending(i, refresh=False)

    def flush_pending(self) -> int:
        """End of the data (a replay): every order in flight as at a segment's end."""
        n = 0
        for i in list(self._pending):
            self._flush_pending(i)
            n += 1
        return n

    def _grid_of(self, i: int) -> np.ndarray | None:
        """Market ``i``'s grid as a C-contiguous bool [1001] (the kernels' fixed type)."""
        g = self.grids[i]
        if g is None:
            return None
        c = self._grid_c.get(i)
        if c is None or c[0] is not g:
            c = (g, np.ascontiguousarray(g, dtype=np.bool_).reshape(PRICE_MAX + 1))
            self._grid_c[i] = c
        return c[1]

    def _count(self, status: int) -> None:
        counts = self.counts
        counts["decisions"] += 1
        if status == AS_SENT:
            counts["orders"] += 1
            if self._hdr[HDR_FILLED]:
                counts["fills"] += 1
        elif status == AS_HOLD:
            counts["held"] += 1
        elif status == AS_MASKED:
            counts["masked"] += 1
        elif status == AS_RISK:
            self.risk.counted(0, int(self._out[OUT_RISK]))
            counts["risk_refused"] += 1
        elif status == AS_REJECTED:
            counts["rejected"] += 1

    def _paper_done(self, i: int, slot: int, status: int) -> None:
        """The paper kernel ran in the step: the client books it (and names a refusal)."""
        o = self._out.tolist()
        err = self.paper.taker_commit(
            slot, o[OUT_PAPER], o[OUT_N_FILLS], o[OUT_RECS], o[OUT_LIMIT], o[OUT_ALLOWED]
        )
        if err is not None:
            log.debug("paper rejected %s: %s", self.tickers[i], err)

    def _submit_slow(self, i: int, slot: int, now: int) -> int:
        """The order passed the risk gate; the paper client takes it through Python."""
        out, hdr = self._out, self._hdr
        allowed = int(out[OUT_ALLOWED])
        hdr[HDR_COUNT] = allowed
        status = AS_SENT
        try:
            _, filled, fee = self.paper.submit_taker(
                slot, int(out[OUT_SIDE]), int(out[OUT_ACTION]), int(out[OUT_LIMIT]), allowed,
                tif=TIF_IOC,
            )  # fmt: skip
            hdr[HDR_FILLED], hdr[HDR_FEE] = filled, fee
        except KalshiApiError as exc:
            hdr[HDR_REJECT] = -1
            status = AS_REJECTED
            log.debug("paper rejected %s: %s", self.tickers[i], exc)
        hdr[HDR_STATUS] = status
        hdr[HDR_EXCH_TS] = out[OUT_EXCH_TS]
        hdr[HDR_HASH] = out[OUT_HASH]
        hdr[HDR_TS] = now
        out[OUT_PUSHED] = finish_record(
            self._rec, self._paper_positions(), slot, self._acct, self.start_cash,
            self._consumed_of(slot), self._rules.fees, self._rules.mark_mode, self._px,
            self._qty, hdr,
            self.ring.buf, self.ring.ctl, self._shadow is None and self.ring.overflow_pending == 0,
        )  # fmt: skip
        return status

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
