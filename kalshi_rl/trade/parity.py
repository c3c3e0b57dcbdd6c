"""Train/live parity: what the actor sees and does live equals what the env saw and did.

One recorded feed session is checked end to end:

1. **Dataset** -- ``store.history.load_history`` over the session's markets and exchange
   time window, ``cadence_updates = N``, every segment kept (``min_segment = 1``): the
   decision points and market features training would get.
2. **Live** -- the sim serves the session in replay mode (``kalshi_rl.sim.replay``); a
   ``LiveNode`` that does not record (``record=False``) feeds its books; the paper client
   and the actor (``tick_updates = N``, nothing persisted) trade on them.  The replay is
   stepped one recorded event at a time and each is awaited until the feed applied it,
   so the actor sees every intermediate book (as the dataset replay does).  After it,
   the markets the dataset settles at their result are settled on the paper client (the
   replay serves no lifecycle events); the paper P&L marks what is still open at the
   book of the market's last decision point, as the env marks an unsettled end.
3. **Backtest** -- the env (``KalshiTradingEnv``, the model's own ``EnvConfig``) runs each
   segment with the same model's deterministic action (``model.predict``).

The report compares, market by market and decision point by decision point: the count
of decision points, market features (bit-identical: float32 bits), full observations
(market + account features, bit-identical), actions, fills and P&L (paper vs backtest).
The actor runs with ``execution='env'``: an order executes as the env executes it
(against the last decision point not later than its arrival in exchange time, known --
and shown in the account features -- from the first decision point later than that, no
new order until its ack, the env's masks, consumption as the env's), so account
features, fills, fees and P&L agree too.  Neither side looks ahead: the env does not
read the next row's time (docs/engine.md), so a market either matches in full or is a
counted failure (docs/actor.md, Parity, lists what cannot match: random latency, several
segments of one market); the report lists and counts every divergence.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.dtypes import NO_TS
from core.features import ACCOUNT_FEATURE_NAMES, MARKET_FEATURE_NAMES, N_MARKET_FEATURES
from kalshi_rl.errors import ConfigError

log = logging.getLogger(__name__)

FEATURE_NAMES = (*MARKET_FEATURE_NAMES, *ACCOUNT_FEATURE_NAMES)
F_TTC = MARKET_FEATURE_NAMES.index("ttc")
MAX_LISTED = 20  # divergences listed per kind (all are counted)


@dataclass
class MarketParity:
    """Per-market comparison."""

    ticker: str
    dataset_rows: int = 0
    live_decisions: int = 0
    compared: int = 0
    market_feature_mismatches: int = 0
    ttc_from_receipt: int = 0  # ttc differs only because the book's time was its receipt
    observation_mismatches: int = 0
    action_mismatches: int = 0
    env_trades: int = 0
    paper_fills: int = 0
    env_pnl: int = 0  # money
    paper_pnl: int = 0  # money
    env_fees: int = 0  # money
    paper_fees: int = 0  # money
    same_ms_rows: int = 0  # decision points sharing their millisecond with the next one
    first_account_divergence: int = -1  # first row whose account features differ (-1: none)

    @property
    def account_equal(self) -> bool:
        """Observations (account features too), fills, fees and P&L all equal the env's."""
        return (
            self.observation_mismatches == 0
            and self.env_trades == self.paper_fills
            and self.env_pnl == self.paper_pnl
            and self.env_fees == self.paper_fees
        )

    @property
    def matched(self) -> bool:
        """This market agrees in full: every decision point compared, market features
        bit-identical, observations bit-identical, actions, fills, fees and P&L equal."""
        return (
            self.dataset_rows == self.live_decisions == self.compared
            and self.market_feature_mismatches == 0
            and self.action_mismatches == 0
            and self.account_equal
        )


@dataclass
class ParityReport:
    """The outcome of one parity run (``ok`` when observations and actions all agree)."""

    session_id: int
    model: str
    cadence_updates: int
    markets: list[MarketParity] = field(default_factory=list)
    divergences: list[str] = field(default_factory=list)
    events_replayed: int = 0

    @property
    def decision_points(self) -> int:
        return sum(m.dataset_rows for m in self.markets)

    @property
    def market_features_identical(self) -> bool:
        return all(
            m.market_feature_mismatches == 0 and m.dataset_rows == m.live_decisions
            for m in self.markets
        )

    @property
    def observations_identical(self) -> bool:
        return self.market_features_identical and all(
            m.observation_mismatches == 0 for m in self.markets
        )

    @property
    def actions_equal(self) -> bool:
        return all(m.action_mismatches == 0 for m in self.markets)

    @property
    def fills_equal(self) -> bool:
        """The paper client filled as often as the env traded, in every market."""
        return all(m.env_trades == m.paper_fills for m in self.markets)

    @property
    def pnl_equal(self) -> bool:
        """Paper P&L and fees equal the backtest's to the money unit, in every market."""
        return all(m.env_pnl == m.paper_pnl and m.env_fees == m.paper_fees for m in self.markets)

    @property
    def markets_matched(self) -> int:
        """Markets that agree in full (``MarketParity.matched``)."""
        return sum(m.matched for m in self.markets)

    @property
    def ok(self) -> bool:
        """Every market agrees in full: observations (market and account features),
        actions, fills, fees and P&L; a market that does not is a failure."""
        return bool(self.markets) and self.markets_matched == len(self.markets)

    def note(self, msg: str) -> None:
        if len(self.divergences) < MAX_LISTED * 4:
            self.divergences.append(msg)

    def text(self) -> str:
        """The human report."""
        lines = [
            f"parity of session {self.session_id} with {self.model}"
            f" (cadence {self.cadence_updates} updates, {self.events_replayed} events replayed)",
            f"{'market':<28} {'rows':>6} {'live':>6} {'mkt!=':>6} {'ttc*':>5} {'obs!=':>6}"
            f" {'act!=':>6}"
            f" {'env tr':>6} {'fills':>6} {'env P&L $':>10} {'paper P&L $':>11}"
            f" {'env fee $':>9} {'paper fee $':>11} {'same ms':>7} {'1st acct!=':>10}"
            f" {'match':>5}",
        ]
        for m in self.markets:
            lines.append(
                f"{m.ticker:<28} {m.dataset_rows:>6} {m.live_decisions:>6}"
                f" {m.market_feature_mismatches:>6} {m.ttc_from_receipt:>5}"
                f" {m.observation_mismatches:>6}"
                f" {m.action_mismatches:>6} {m.env_trades:>6} {m.paper_fills:>6}"
                f" {m.env_pnl / 10_000:>10.4f} {m.paper_pnl / 10_000:>11.4f}"
                f" {m.env_fees / 10_000:>9.4f} {m.paper_fees / 10_000:>11.4f}"
                f" {m.same_ms_rows:>7} {m.first_account_divergence:>10}"
                f" {'yes' if m.matched else 'NO':>5}"
            )
        lines.append(
            f"market features bit-identical: {self.market_features_identical};"
            f" observations bit-identical: {self.observations_identical};"
            f" actions equal: {self.actions_equal}; fills equal: {self.fills_equal};"
            f" P&L and fees equal: {self.pnl_equal}"
        )
        lines.append(
            f"markets matched in full: {self.markets_matched} / {len(self.markets)}"
            f" ({self.decision_points} decision points)"
        )
        lines.append(
            "ttc* = decision points whose time is still the receipt time of the segment's"
            " opening snapshot (no exchange time on the wire; time runs forward from it): the"
            " dataset has the recording's receipt, the replay its own; only ttc differs"
        )
        lines.append(
            "same ms = decision points whose next one has the same exchange millisecond (an"
            " order in flight there meets the last of them and shows from the first later"
            " one, in the env as live); 1st acct!= = the first decision point whose"
            " observation differs (-1: none)"
        )
        if self.divergences:
            lines.append("divergences (first ones):")
            lines += [f"  {d}" for d in self.divergences]
        return "\n".join(lines)


def env_config_from_dict(d: dict[str, Any]) -> Any:
    """An ``EnvConfig`` back from its ``as_dict`` form (enums by name, lists as tuples)."""
    from kalshi_rl.env.config import EnvConfig

    base = EnvConfig()
    kw: dict[str, Any] = {}
    for f in dataclasses.fields(EnvConfig):
        if f.name not in d:
            continue
        cur = getattr(base, f.name)
        v = d[f.name]
        if isinstance(cur, enum.Enum):
            v = type(cur)[v] if isinstance(v, str) else type(cur)(v)
        elif isinstance(cur, tuple):
            v = tuple(v)
        kw[f.name] = v
    return EnvConfig(**kw)


async def _session_window(conn: Any, session_id: int) -> tuple[list[str], int, int]:
    row = await conn.fetchrow("SELECT markets FROM feed_sessions WHERE id = $1", session_id)
    if row is None:
        raise ConfigError(f"no feed session {session_id}")
    lo, hi = await conn.fetchrow(
        "SELECT min(exch_ts), max(exch_ts) FROM ("
        " SELECT exch_ts FROM orderbook_snapshots WHERE session_id = $1"
        " UNION ALL SELECT exch_ts FROM orderbook_deltas WHERE session_id = $1) x",
        session_id,
    )
    if lo is None:
        raise ConfigError(f"feed session {session_id} recorded no book data")
    return list(row["markets"]), int(lo), int(hi) + 1


async def _market_times(conn: Any, tickers: list[str]) -> dict[str, tuple[int, int]]:
    rows = await conn.fetch(
        "SELECT ticker, (extract(epoch FROM open_time) * 1000)::bigint AS o,"
        " (extract(epoch FROM close_time) * 1000)::bigint AS c FROM markets"
        " WHERE ticker = ANY($1::text[])",
        tickers,
    )
    return {
        r["ticker"]: (
            NO_TS if r["o"] is None else int(r["o"]),
            NO_TS if r["c"] is None else int(r["c"]),
        )
        for r in rows
    }


async def _snapshot_receipts(conn: Any, session_id: int) -> dict[str, list[int]]:
    """ticker -> receipt time (ms) of each recorded snapshot, in recording order."""
    rows = await conn.fetch(
        "SELECT m.ticker, s.rec_id, min(s.recv_ts) AS recv FROM orderbook_snapshots s"
        " JOIN markets m ON m.id = s.market_id WHERE s.session_id = $1"
        " GROUP BY m.ticker, s.rec_id ORDER BY s.rec_id",
        session_id,
    )
    out: dict[str, list[int]] = {}
    for r in rows:
        out.setdefault(r["ticker"], []).append(int(r["recv"]) // 1_000_000)
    return out


async def build_session_dataset(dsn: str, session_id: int, cadence: int) -> tuple[Any, list[str]]:
    """The dataset training would build from ``session_id`` (every segment kept)."""
    from kalshi_rl.store import db
    from kalshi_rl.store.history import HistoryQuery, load_history

    conn = await db.connect(dsn)
    try:
        tickers, lo, hi = await _session_window(conn, session_id)
        q = HistoryQuery(
            tickers=tuple(tickers), start=lo, end=hi, cadence_updates=cadence, min_segment=1
        )
        ds = await load_history(conn, q)
    finally:
        await conn.close()
    return ds, tickers


async def replay_with_actor(
    dsn: str,
    session_id: int,
    model_ref: str,
    cadence: int,
    *,
    tickers: list[str],
    fast: bool = True,
    step_timeout_s: float = 10.0,
    results: dict[str, str] | None = None,
) -> tuple[Any, int, dict[str, int], dict[str, int]]:
    """Replay the session through the sim with the actor attached.

    ``results``: ticker -> ``'yes'``/``'no'`` for the markets the dataset settles at their
    result; after the replay the paper client settles them (``settle_market``), as the
    exchange's ``settled`` lifecycle event would live (a replay serves the book and trade
    rows, not the lifecycle), so the paper P&L is the env's settled P&L.

    Returns:
        (actor, events replayed, ticker -> paper P&L in money, ticker -> paper fills).
    """
    from core.dtypes import EV_DELTA, EV_SNAPSHOT, EV_TRADE
    from kalshi_rl.config import CollectorConfig, FeedConfig
    from kalshi_rl.live.node import LiveNode
    from kalshi_rl.sim.config import SimConfig
    from kalshi_rl.sim.server import SimExchange
    from kalshi_rl.store import db
    from kalshi_rl.trade.actor import ActorConfig
    from kalshi_rl.trade.risk import RiskConfig
    from kalshi_rl.trade.wiring import attach_trading

    conn = await db.connect(dsn)
    try:
        times = await _market_times(conn, tickers)
        receipts = await _snapshot_receipts(conn, session_id)
    finally:
        await conn.close()
    sim = SimExchange(
        SimConfig(replay_session=session_id, replay_dsn=dsn, autostart=False, record_limit=0)
    )
    await sim.start()
    try:
        cfg = CollectorConfig(
            rest_url=sim.rest_url,
            tickers=tuple(sim.tickers),
            database_url=dsn,
            mode="sim",
            ring_capacity=1 << 16,
            progress_interval_s=0.0,
        )
        acfg = ActorConfig(
            tick_updates=cadence,
            max_staleness_s=0.0,  # recorded times: a replayed book is never "stale"
            risk=RiskConfig(close_guard_s=0.0, kill_file="/nonexistent/parity.kill"),
            execution="env",  # orders execute as the env executes them (docs/actor.md)
        )
        node = LiveNode(cfg, FeedConfig(ws_url=sim.ws_url), record=False)
        async with node:

            def receipt_ms(ticker: str, k: int) -> int:
                # the recording's receipt of the market's k-th snapshot (datasets use it)
                r = receipts.get(ticker, [])
                return r[k - 1] if 0 < k <= len(r) else NO_TS

            trading = await attach_trading(
                node, model_ref, acfg, reload=False, persist=False, fast=fast,
                market_times=times, trace=True, receipt_ms=receipt_ms,
            )  # fmt: skip
            actor = trading.actor
            feed = node.feed
            n_markets = len(sim.tickers)

            def seen() -> int:
                st = feed.stats
                return int(st.deltas + st.snapshots + st.trades)

            await _wait(lambda: feed.stats.snapshots >= n_markets, step_timeout_s, "snapshots")
            expected = seen()
            replay = sim._replay
            events = 0
            while not replay.done:
                p0 = replay.pos
                n = sim.advance(1)
                chunk = replay.events[p0 : p0 + n]
                kinds = chunk["kind"]
                expected += int((kinds == EV_DELTA).sum()) + int((kinds == EV_TRADE).sum())
                expected += 1 if (kinds == EV_SNAPSHOT).any() else 0
                events += n
                await _wait(lambda e=expected: seen() >= e, step_timeout_s, "the feed")
            actor.flush_pending()  # the data ended: orders in flight as at a segment's end
            for t, res in (results or {}).items():
                trading.paper.settle_market(t, res)
            # marked as the env marks an unsettled episode's end: at its last decision point
            pnl = {t: actor.value_at_last_decision(i) - actor.start_cash
                   for i, t in enumerate(actor.tickers)}  # fmt: skip
            fills = trading.paper.fills_array()
            paper_fills = {t: int((fills["market"] == int(actor.slots[i])).sum())
                           for i, t in enumerate(actor.tickers)}  # fmt: skip
            return actor, events, pnl, paper_fills
    finally:
        await sim.stop()


async def _wait(pred: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise ConfigError(f"parity: timed out waiting for {what}")
        await asyncio.sleep(0)


def run_env(
    ds: Any, model: Any, env_cfg: Any, notes: list[str] | None = None
) -> list[dict[str, Any]]:
    """The backtest: each segment once with ``model.predict(obs, deterministic=True)``.

    Returns:
        per segment: ``obs`` [n, F], ``actions`` [n-1, D], ``trades``, ``pnl`` and
        ``fees`` (money); ``notes`` receives what had to be adapted.
    """
    notes = notes if notes is not None else []
    from kalshi_rl.env.config import SegmentOrder
    from kalshi_rl.env.trading import INFO_TRADES, KalshiTradingEnv

    cfg = env_cfg.replace(segment_order=SegmentOrder.SEQUENTIAL, random_start=False,
                          max_episode_steps=0)  # fmt: skip
    out = []
    for s in range(ds.n_segments):
        sub = ds.subset(np.array([s]))
        if sub.n_rows < 2:
            out.append(
                {"obs": np.zeros((sub.n_rows, 0)), "actions": [], "trades": 0, "pnl": 0, "fees": 0}
            )
            continue
        if np.any(np.diff(sub.ts) < 0):
            # a snapshot row may carry its receive time (no exchange time on the wire), later
            # than the deltas after it; the env's latency model needs time to run forward
            sub = sub._replace(ts=np.minimum.accumulate(sub.ts[::-1])[::-1].copy())
            notes.append(f"segment {s}: dataset ts not monotonic; env ran on a monotone copy")
        env = KalshiTradingEnv(sub, cfg)
        obs, _ = env.reset(seed=0)
        all_obs, acts = [obs], []
        info: dict[str, Any] = {}
        while True:
            a, _ = model.predict(obs, deterministic=True)
            acts.append(np.asarray(a).reshape(-1))
            obs, _r, term, trunc, info = env.step(a)
            all_obs.append(obs)
            if term or trunc:
                break
        out.append({
            "obs": np.asarray(all_obs, dtype=np.float32),
            "actions": acts,
            "trades": int(info.get(INFO_TRADES, 0)),
            "pnl": int(env._batch.episodes[0]["pnl"]),  # money, exact
            "fees": int(env._batch.episodes[0]["fees"]),
        })  # fmt: skip
    return out


def compare(  # noqa: PLR0917 -- the report and the five things compared
    report: ParityReport,
    ds: Any,
    actor: Any,
    env_runs: list[dict[str, Any]],
    paper_pnl: dict[str, int],
    paper_fills: dict[str, int],
    paper_fees: dict[str, int] | None = None,
) -> ParityReport:
    """Fill ``report`` from the dataset, the actor's trace and the env runs."""
    trace = actor.trace or []
    by_market: dict[int, list[tuple[int, int, np.ndarray, np.ndarray, int, bool]]] = {}
    for rec in trace:
        by_market.setdefault(rec[0], []).append(rec)
    seg_of_market: dict[str, list[int]] = {}
    for s in range(ds.n_segments):
        seg_of_market.setdefault(ds.markets[int(ds.seg_market[s])], []).append(s)
    fills = paper_fills
    for i, t in enumerate(actor.tickers):
        mp = MarketParity(t)
        live = by_market.get(i, [])
        mp.live_decisions = len(live)
        segs = seg_of_market.get(t, [])
        rows = [r for s in segs for r in range(int(ds.seg_start[s]), int(ds.seg_end[s]))]
        mp.dataset_rows = len(rows)
        if mp.dataset_rows != mp.live_decisions:
            report.note(f"{t}: {mp.dataset_rows} dataset decision points, {mp.live_decisions} live")
        env_obs = [o for s in segs for o in env_runs[s]["obs"]]
        env_act = [a for s in segs for a in [*env_runs[s]["actions"], None]]
        mp.env_trades = sum(env_runs[s]["trades"] for s in segs)
        mp.env_pnl = sum(env_runs[s]["pnl"] for s in segs)
        mp.paper_fills = int(fills.get(t, 0))
        mp.paper_pnl = int(paper_pnl.get(t, 0))
        mp.env_fees = sum(env_runs[s].get("fees", 0) for s in segs)
        mp.paper_fees = int((paper_fees or {}).get(t, 0))
        same = np.zeros(len(rows), dtype=bool)
        for s in segs:  # within a segment: row t and t + 1 share the millisecond
            a, b = int(ds.seg_start[s]), int(ds.seg_end[s])
            off = rows.index(a)
            same[off : off + b - a - 1] = ds.ts[a + 1 : b] == ds.ts[a : b - 1]
        mp.same_ms_rows = int(same.sum())
        for k, (row, rec) in enumerate(zip(rows, live, strict=False)):
            _i, ts, obs, dims, _filled, from_receipt = rec
            mp.compared += 1
            want = ds.features[row]
            got = obs[:N_MARKET_FEATURES]
            diff = np.flatnonzero(want.view(np.uint32) != got.view(np.uint32))
            if diff.size and from_receipt and diff.tolist() == [F_TTC]:
                # the time comes from a snapshot's receipt (no exchange time on the wire):
                # the recording's receipt vs the replay's
                mp.ttc_from_receipt += 1
                report.note(
                    f"{t} row {k}: ttc from the book's receipt time (dataset {want[F_TTC]!r},"
                    f" live {got[F_TTC]!r}): the segment's time is still a snapshot's receipt"
                )
            elif diff.size:
                mp.market_feature_mismatches += 1
                j = int(diff[0])
                report.note(
                    f"{t} row {k} (ts {ts}): market feature {FEATURE_NAMES[j]} dataset"
                    f" {want[j]!r} live {got[j]!r}"
                )
            if k < len(env_obs):
                eo = env_obs[k]
                if not np.array_equal(eo.view(np.uint32), obs.view(np.uint32)):
                    if mp.first_account_divergence < 0:
                        mp.first_account_divergence = k
                    mp.observation_mismatches += 1
                    j = int(np.flatnonzero(eo.view(np.uint32) != obs.view(np.uint32))[0])
                    report.note(
                        f"{t} row {k}: observation {FEATURE_NAMES[j]} env {eo[j]!r} live {obs[j]!r}"
                    )
            ea = env_act[k] if k < len(env_act) else None
            if ea is not None and not np.array_equal(np.asarray(ea), dims):
                mp.action_mismatches += 1
                report.note(f"{t} row {k}: action env {ea.tolist()} live {dims.tolist()}")
        _note_totals(report, mp)
        report.markets.append(mp)
    return report


def _note_totals(report: ParityReport, mp: MarketParity) -> None:
    """Note market ``mp``'s trade, P&L and fee differences (money)."""
    t = mp.ticker
    if mp.env_trades != mp.paper_fills:
        report.note(f"{t}: env traded {mp.env_trades} times, paper filled {mp.paper_fills}")
    if mp.env_pnl != mp.paper_pnl:
        report.note(f"{t}: P&L backtest {mp.env_pnl} vs paper {mp.paper_pnl} (money)")
    if mp.env_fees != mp.paper_fees:
        report.note(f"{t}: fees backtest {mp.env_fees} vs paper {mp.paper_fees} (money)")


async def run_parity(
    dsn: str, session_id: int, model_ref: str, *, cadence: int = 1, fast: bool = True
) -> ParityReport:
    """Dataset vs live actor vs env for one recorded session (see the module docstring)."""
    from kalshi_rl.store import db
    from kalshi_rl.trade.wiring import resolve_ref

    ds, tickers = await build_session_dataset(dsn, session_id, cadence)
    actor, events, pnl, fills = await replay_with_actor(
        dsn, session_id, model_ref, cadence, tickers=tickers, fast=fast, results=settled(ds)
    )
    conn = await db.connect(dsn)
    try:
        mv = await resolve_ref(conn, model_ref)
    finally:
        await conn.close()
    env_cfg = env_config_from_dict(actor.model.env_config.get("env", {}))
    notes: list[str] = []
    env_runs = run_env(ds, actor.model.sb3, env_cfg, notes)
    report = ParityReport(session_id, f"{mv.name}:v{mv.version}", cadence, events_replayed=events)
    for n in notes:
        report.note(n)
    return compare(report, ds, actor, env_runs, pnl, fills, paper_fees(actor))


def settled(ds: Any) -> dict[str, str]:
    """ticker -> ``'yes'``/``'no'``: the markets whose last segment the env settles at the
    market's result (``Dataset.seg_result``)."""
    from kalshi_rl.env.kernels import RESULT_NO, RESULT_YES

    out: dict[str, str] = {}
    for s in range(ds.n_segments):  # segments in time order: the last one of a market wins
        t = ds.markets[int(ds.seg_market[s])]
        r = int(ds.seg_result[s])
        if r in (RESULT_NO, RESULT_YES):
            out[t] = "yes" if r == RESULT_YES else "no"
        else:
            out.pop(t, None)
    return out


def paper_fees(actor: Any) -> dict[str, int]:
    """ticker -> fees the paper client charged in that market (money), as the env counts them."""
    out = {}
    for i, t in enumerate(actor.tickers):
        actor._fill_acct(i)
        out[t] = int(actor._acct[0]["fees_paid"])
    return out
