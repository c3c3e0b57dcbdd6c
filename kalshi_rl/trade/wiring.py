"""Put an actor on a live node: paper client, persistence, action sink, episodes, reload.

The one place the trading parts are wired (``kalshi-rl trade``, ``up`` and the dashboard
call :func:`attach_trading` on their ``LiveNode``)::

    async with LiveNode(cfg, feed_cfg) as node:
        trading = await attach_trading(node, "mymodel", ActorConfig())
        await node.run(stop)

Order: resolve the model (``NAME`` = its deployed version, else the newest ready one;
``NAME:VERSION`` exactly) and load it off the event loop; open (or reopen) the paper
account and rebuild it from its stored logs (a restarted actor resumes with the same
positions); the paper client's rings get a writer; book and trade listeners are
registered paper client first, actor second; the action sink starts; the actor opens its
episode and starts; the reloader LISTENs.  On the node's exit the reloader stops, the
actor stops (episode closed), then the sinks and writers flush.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.dtypes import NO_TS
from kalshi_rl import registry
from kalshi_rl.errors import ConfigError, KalshiRLError, RegistryError
from kalshi_rl.tasks import stop_tasks
from kalshi_rl.trade.actor import Actor, ActorConfig, refuse_live
from kalshi_rl.trade.records import ActionSink, EpisodeStore
from kalshi_rl.trade.reload import Reloader, load_version

log = logging.getLogger(__name__)


@dataclass
class Trading:
    """The trading parts attached to a node."""

    actor: Actor
    paper: Any
    sink: ActionSink
    reloader: Reloader | None
    account_id: int
    restored: RestoreSettler | None = None


async def resolve_ref(conn: Any, ref: str) -> registry.ModelVersion:
    """``NAME:VERSION``, ``NAME`` (deployed, else newest ready) or a numeric id."""
    if ":" in ref or ref.isdigit():
        return await registry.resolve(conn, ref)
    mv = await registry.deployed(conn, ref)
    if mv is None:
        mv = await registry.latest(conn, ref, registry.ModelStatus.READY)
    if mv is None:
        raise RegistryError(f"model {ref!r} has no deployed or ready version")
    return mv


def _ms(v: Any) -> int:
    from datetime import datetime

    if isinstance(v, str) and v:
        try:
            return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return NO_TS
    return NO_TS


async def attach_trading(
    node: Any,
    model_ref: str,
    config: ActorConfig,
    *,
    account: str = "default",
    paper_config: Any = None,
    reload: bool = True,
    shadow_reload: bool = False,
    poll_s: float = 2.0,
    fast: bool = True,
    persist: bool = True,
    market_times: dict[str, tuple[int, int]] | None = None,
    trace: bool = False,
    receipt_ms: Any = None,
) -> Trading:
    """Build and start the paper client + actor on ``node`` (see the module docstring).

    Args:
        node: an entered ``kalshi_rl.live.node.LiveNode``.
        model_ref: ``NAME``, ``NAME:VERSION`` or a models.id.
        config: actor settings (mode 'paper'; 'live' is refused).
        account: paper account name (reopened and rebuilt if it exists).
        paper_config: ``kalshi_rl.trade.paper.PaperConfig`` (its start_cash seeds a new account).
        reload: follow deployments of the model's name.
        shadow_reload: deployments become the shadow candidate instead of trading.
        poll_s: the reloader's fallback poll period.
        fast: use the Numba fast path when the network allows it.
        persist: False keeps everything in memory: no paper account row or writer, no
            episodes, action records stay in the actor's ring (``kalshi-rl parity``).
        market_times: ticker -> (open_ms, close_ms); default from the node's REST metadata.
        trace: keep every decision's observation and action in ``actor.trace`` (parity).
        receipt_ms: ``Actor.receipt_ms`` (parity: the recording's snapshot receipt times).

    Raises:
        LiveTradingRefused: mode 'live'.  RegistryError / PolicyError: no usable model.
    """
    from kalshi_rl.sim.grid import PriceLevelStructure, parse_structure
    from kalshi_rl.store.writer import Writer
    from kalshi_rl.trade import paper_store
    from kalshi_rl.trade.paper import (
        MarketInfo,
        PaperConfig,
        PaperRings,
        create_trading_client,
    )

    refuse_live(config.mode)
    tickers = await _tradable(node)
    following = node.follower is not None
    if not tickers and not following:  # a fixed market list with nothing in it
        raise ConfigError("the node trades no markets")
    if not tickers:
        log.info("the node follows the market list: trading markets as they are listed")
    async with node.pool.acquire() as conn:
        mv = await resolve_ref(conn, model_ref)
    loaded = await load_version(mv, fast=fast)
    pcfg = paper_config or PaperConfig()
    await _warm(loaded, config, pcfg)
    account_id, saved = 0, None
    if persist:
        async with node.pool.acquire() as conn:
            account_id, created = await paper_store.open_account(
                conn, account, pcfg.start_cash, pcfg.to_json()
            )
            saved = None if created else await paper_store.load_account(conn, account_id)

    def structure(t: str) -> PriceLevelStructure:
        s = node.meta.get(t, {}).get("price_level_structure")
        return parse_structure(s) if s else PriceLevelStructure.LINEAR_CENT

    rings = PaperRings() if persist else None
    paper = create_trading_client(
        config.mode,
        node.books,
        config=pcfg,
        markets=[MarketInfo(t, structure(t)) for t in tickers],
        rings=rings,
        account_id=account_id,
    )
    if saved is not None:
        paper.restore(saved)
        log.info("paper account %r (%d) rebuilt: cash %d", account, account_id, paper.cash)
    if rings is not None:
        from kalshi_rl.store import db

        root = (
            Path(node.config.spill_dir)
            if node.config.spill_dir
            else db.default_data_dir() / "spill"
        )
        spill = root / f"db-{node.db_id}" / f"paper-{account_id}"

        def connect() -> Any:
            return db.connect(node.dsn)

        writer = Writer(
            connect,
            rings.by_table(),
            account_id,
            node.books.ticker_of,
            spill_dir=spill,
            db_id=node.db_id,
        )
        node.writer.writers.append(writer)
        writer.start()
    node.add_book_listener(paper.on_book_update)
    node.add_trade_listener(paper.on_trades)
    store = (
        EpisodeStore(node.pool, node.session_id, account_id, {"actor": _jsonable(config)})
        if persist
        else None
    )
    times = market_times or {
        t: (_ms(m.get("open_time")), _ms(m.get("close_time"))) for t, m in node.meta.items()
    }
    grids = {t: _grid(structure(t)) for t in tickers}
    actor = Actor(
        node.books, paper, loaded, tickers, config,
        store=store, market_times=times, market_grids=grids, follow=following,
    )  # fmt: skip
    sink = ActionSink(actor.ring, node.pool, node.books.ticker_of)
    if persist:
        node.add_sink(sink)
    node.add_closer(actor.stop)
    if trace:
        actor.trace = []
    actor.receipt_ms = receipt_ms
    await actor.start()
    node.add_book_listener(actor.on_books)
    settler = PaperSettler(paper)
    if node.lifecycle is not None:
        node.lifecycle.listeners.append(settler.on_lifecycle)
        node.lifecycle.listeners.append(actor.on_lifecycle)
    restored = None
    if saved is not None:  # positions held across the restart: settle those determined meanwhile
        restored = RestoreSettler(node, paper, settler)
        await restored.start()
        node.add_closer(restored.close)
    node.actor = actor
    if node.follower is not None:  # rolling listings: trade the markets the node follows
        sync = MarketSync(node, paper, actor)
        sync.start()
        node.add_closer(sync.close)
    reloader = None
    if reload:
        reloader = Reloader(actor, node.pool, poll_s=poll_s, shadow=shadow_reload, fast=fast)
        await reloader.start()
        node.add_closer(reloader.close)
    return Trading(actor, paper, sink, reloader, account_id, restored)


DEFAULT_CLOSE_GUARD_S = 60.0  # RiskConfig's default, made for Kalshi's long markets
CLOSE_GUARD_LIFE_FRACTION = 20  # the guard is 1/20 of the market's life, at most the default


def close_guard_for_life(
    market_life_ms: float | None, default_s: float = DEFAULT_CLOSE_GUARD_S
) -> float:
    """The close guard (no opening orders this close to close, seconds) for markets living
    ``market_life_ms``: 1/20 of the life, at most ``default_s`` (9 s for the sim's 3-minute
    markets; Kalshi's long markets keep 60 s).  A fixed 60 s guard refuses every opening
    order of a one-minute market.  Unknown life: ``default_s``.  ``kalshi-rl up`` and
    ``kalshi-rl trade`` both use this rule."""
    if market_life_ms is None or market_life_ms <= 0:
        return default_s
    return min(default_s, market_life_ms / (1000.0 * CLOSE_GUARD_LIFE_FRACTION))


def market_life_ms(meta: dict[str, Any]) -> float | None:
    """The longest open -> close span of the markets in ``meta`` (ticker -> REST market
    object), ms; None when no market has both times.  The longest, not a typical one: the
    first markets of staggered rolling series open with part of their life already gone,
    and on a mix of markets the longer life gives the larger (safer) guard."""
    lives = []
    for m in meta.values():
        o, c = _ms(m.get("open_time")), _ms(m.get("close_time"))
        if NO_TS not in (o, c) and c > o:
            lives.append(c - o)
    return float(max(lives)) if lives else None


async def _warm(loaded: Any, config: ActorConfig, pcfg: Any) -> None:
    """Compile (or load) the trading path's kernels off the event loop before trading."""
    from kalshi_rl.live.warm import warm_trading_kernels

    try:
        took = await asyncio.to_thread(warm_trading_kernels, loaded, config, pcfg)
    except Exception:  # the kernels then compile on first use; trading still works
        log.exception("warming the trading kernels failed")
        return
    log.info("trading kernels ready in %.2f s (Numba compile/cache load)", took)


async def _tradable(node: Any) -> list[str]:
    """The node's markets at the start plus those it follows now (rolling listings: the
    exchange may have listed none open when the node started), with their REST objects in
    ``node.meta``."""
    tickers = list(dict.fromkeys([*node.tickers, *getattr(node.feed, "tickers", ())]))
    missing = [t for t in tickers if t not in node.meta]
    if missing and node.follower is not None:
        try:
            for m in await node.follower.rest.markets_by_ticker(missing):
                if isinstance(m.get("ticker"), str):
                    node.meta[m["ticker"]] = m
        except (OSError, TimeoutError, KalshiRLError) as exc:
            log.warning("market metadata of %d followed markets unavailable: %s", len(missing), exc)
    return tickers


class PaperSettler:
    """Settles the paper account's positions when a market is determined (lifecycle listener).

    Kalshi pays a determined market's winning contracts $1 and closes the position; the
    paper client does the same in ``settle_market`` (cancels its resting orders, pays out,
    records a settlement row).  Without this a position in a finished market would stay
    open, marked against the emptied book at close (liquidation value 0) forever, and the
    P&L split would never show a settlement.  A market the paper client does not know (never
    traded, or listed and determined before the market sync added it) is skipped; the
    ``settled`` event after ``determined`` settles nothing twice.
    """

    def __init__(self, paper: Any) -> None:
        self.paper = paper
        self.settled: set[str] = set()
        self.n_settlements = 0

    def on_lifecycle(self, ev: Any) -> None:
        if ev.event_type not in ("determined", "settled") or ev.result not in ("yes", "no"):
            return
        self.on_settled(ev.ticker, ev.result)

    def on_settled(self, ticker: str, result: str) -> None:
        """Market ``ticker`` was determined ``result`` (yes|no): settle it once."""
        if ticker in self.settled:
            return
        try:
            out = self.paper.settle_market(ticker, result)
        except KalshiRLError as exc:  # not a market of the paper client
            log.debug("paper settlement of %s skipped: %s", ticker, exc)
            return
        self.settled.add(ticker)
        if out is not None:
            self.n_settlements += 1
            log.info("paper: %s determined %s, position settled", ticker, result)


class RestoreSettler:
    """Settles positions whose market was determined while the account was down.

    A restored paper account may hold positions in markets that closed and were determined
    while nothing listened: no lifecycle event will come for them (the follower drops a
    determined market), so without this they would stay open forever, cash short of their
    payout.  After the restore every market with a non-zero position is looked up over the
    exchange's REST API (``GET /markets/{ticker}``, the same ``KalshiRest`` client for the sim
    and Kalshi); a determined one is settled by the paper client (``settle_market``, recorded
    to paper_settlements like a live settlement, through the shared ``PaperSettler`` so a
    lifecycle event never settles it twice).  A market still open is kept and looked up again
    every ``recheck_s`` (a followed market settles by its lifecycle event first; the recheck
    also covers a ``determined`` event lost in a feed gap); a lookup that fails is logged,
    counted in ``stats['failed']`` and retried after ``retry_s``.
    """

    # REST statuses with a final result ("disputed" waits for the dispute's outcome)
    SETTLED_STATUSES = frozenset({"determined", "settled", "finalized", "amended"})

    def __init__(
        self, node: Any, paper: Any, settler: PaperSettler, *,
        retry_s: float = 5.0, recheck_s: float = 60.0,
    ) -> None:  # fmt: skip
        self.node = node
        self.paper = paper
        self.settler = settler
        self.retry_s = retry_s
        self.recheck_s = recheck_s
        self.pending = self.held()
        self.stats = {"held": len(self.pending), "lookups": 0, "failed": 0, "settled": 0}
        self._rest: Any = None
        self._task: asyncio.Task[None] | None = None

    def held(self) -> list[str]:
        """Tickers of the paper client's markets with a non-zero position or a resting order
        (settling a determined market cancels its orders too)."""
        from core.dtypes import ORD_RESTING

        slots = set(np.flatnonzero(self.paper.positions["position"] != 0).tolist())
        orders = self.paper.orders_array()
        slots |= set(orders["market"][orders["status"] == ORD_RESTING].tolist())
        ticker_of = self.paper.books.ticker_of
        return sorted({ticker_of(int(s)) for s in slots})

    async def start(self) -> None:
        """Start looking up the held markets (the first pass runs in the background)."""
        if not self.pending:
            return
        from kalshi_rl.kalshi.rest import KalshiRest

        log.info("restored positions in %d markets: checking them over REST", len(self.pending))
        self._rest = KalshiRest(self.node.config.rest_url, self.node.credentials, max_retries=1)
        self._task = asyncio.create_task(self._run(), name="paper-restore-settler")

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_tasks([task])
        if self._rest is not None:
            await self._rest.aclose()
            self._rest = None

    async def check(self) -> bool:
        """One pass over the pending markets; True if a lookup failed (retry sooner)."""
        failed = False
        for t in list(self.pending):
            if t in self.settler.settled:  # its lifecycle event settled it meanwhile
                self.pending.remove(t)
                continue
            self.stats["lookups"] += 1
            try:
                m = await self._rest.market(t)
            except (OSError, TimeoutError, KalshiRLError, KeyError, ValueError) as exc:
                self.stats["failed"] += 1
                failed = True
                log.warning("restored position in %s: market lookup failed (%s); retrying", t, exc)
                continue
            status, result = m.get("status"), m.get("result")
            if status not in self.SETTLED_STATUSES:
                continue  # still open (or closed, not determined yet): kept, checked again
            if result not in ("yes", "no"):
                log.warning("restored position in %s: market %s with result %r: kept", t,
                            status, result)  # fmt: skip
                continue
            self.settler.on_settled(t, str(result))
            self.pending.remove(t)
            self.stats["settled"] += 1
            log.info("restored position in %s settled: market determined %s", t, result)
        return failed

    async def _run(self) -> None:
        while self.pending:
            failed = await self.check()
            if self.pending:
                await asyncio.sleep(self.retry_s if failed else self.recheck_s)


class MarketSync:
    """Adds the markets the node starts following (new listings) to the paper client and
    the actor, once a second, off the per-tick path.

    The follower adds a listed market to the feed (lifecycle event or REST re-scan); here
    its REST object is fetched (price structure, open/close times, status), the paper
    client learns it (``add_market``: its grid, its position row) and then the actor
    (``Actor.add_markets``).  A market already determined or closed is added closed for
    new positions.  If REST fails the market is tried again on the next pass.
    """

    def __init__(self, node: Any, paper: Any, actor: Actor, interval_s: float = 1.0) -> None:
        self.node = node
        self.paper = paper
        self.actor = actor
        self.interval_s = interval_s
        self.added = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="actor-market-sync")

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop_tasks([task])

    def missing(self) -> list[str]:
        """Tickers the feed follows that the actor does not trade yet."""
        known = self.actor.index_of_ticker
        return [t for t in self.node.feed.tickers if t not in known]

    async def sync(self) -> list[str]:
        """One pass; returns the tickers added."""
        from kalshi_rl.kalshi.follow import DONE_STATUSES
        from kalshi_rl.sim.grid import PriceLevelStructure, parse_structure
        from kalshi_rl.trade.paper import MarketInfo

        new = self.missing()
        if not new:
            return []
        objs = await self.node.follower.rest.markets_by_ticker(new)
        meta = {m["ticker"]: m for m in objs if isinstance(m.get("ticker"), str)}
        new = [t for t in new if t in meta]  # not listed yet: next pass
        times, grids, closed = {}, {}, []
        for t in new:
            m = meta[t]
            s = m.get("price_level_structure")
            structure = parse_structure(s) if s else PriceLevelStructure.LINEAR_CENT
            self.paper.add_market(MarketInfo(t, structure))
            self.node.meta[t] = m
            times[t] = (_ms(m.get("open_time")), _ms(m.get("close_time")))
            grids[t] = _grid(structure)
            if m.get("status") in DONE_STATUSES or m.get("status") == "closed":
                closed.append(t)
        added = self.actor.add_markets(new, market_times=times, market_grids=grids, closed=closed)
        self.added += len(added)
        return added

    async def _run(self) -> None:
        while True:
            try:
                await self.sync()
            except (OSError, TimeoutError, KalshiRLError) as exc:
                log.warning("actor market sync postponed: %s", exc)
            await asyncio.sleep(self.interval_s)


def _grid(structure: Any) -> Any:
    import numpy as np

    from core.dtypes import PRICE_MAX
    from kalshi_rl.sim.grid import price_grid

    g = np.zeros(PRICE_MAX + 1, dtype=np.bool_)
    g[price_grid(structure)] = True
    return g


def _jsonable(config: ActorConfig) -> dict[str, Any]:
    import dataclasses

    out = dataclasses.asdict(config)
    return {k: (v if isinstance(v, int | float | str | bool | dict) or v is None else str(v))
            for k, v in out.items()}  # fmt: skip
