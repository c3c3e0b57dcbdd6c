"""What reaches the policy: never an invalid, stale or malformed book; and 'live' is refused.

A spy policy (the real fast policy, wrapped to record what it is shown) sits in a real
actor over a real BookSet and PaperClient; books are put into each bad state by the same
means the feed uses (invalidate, a crossed delta) or by corrupting the arrays directly.
The last test drives the same through the sim over WebSockets (a seq gap, garbage).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from actor_support import drive, flip_flop_model, node, register, until

from core.book import BookSet
from core.dtypes import DELTA_DTYPE, SIDE_NO, SIDE_YES, SNAPSHOT_LEVEL_DTYPE
from kalshi_rl.env.config import EnvConfig
from kalshi_rl.errors import LiveTradingRefused
from kalshi_rl.sim.config import SimConfig
from kalshi_rl.sim.server import SimExchange
from kalshi_rl.trade.actor import Actor, ActorConfig
from kalshi_rl.trade.paper import MarketInfo, PaperClient, create_trading_client
from kalshi_rl.trade.policy import load_model
from kalshi_rl.trade.risk import RiskConfig
from kalshi_rl.trade.wiring import attach_trading
from kalshi_rl.train.run import env_identity

T0 = 1_800_000_000_000_000_000


class Spy:
    """Wraps a policy and keeps every observation it was asked about."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[np.ndarray] = []

    @property
    def actions(self) -> np.ndarray:
        return self.inner.actions

    @property
    def probs(self) -> np.ndarray:
        return self.inner.probs

    def decide(self, obs: np.ndarray) -> int:
        self.seen.append(obs.copy())
        return int(self.inner.decide(obs))


def snapshot(books: BookSet, slot: int, ts_ns: int) -> None:
    rows = [(SIDE_YES, 400, 500), (SIDE_YES, 390, 800), (SIDE_NO, 550, 600), (SIDE_NO, 540, 900)]
    lv = np.zeros(len(rows), dtype=SNAPSHOT_LEVEL_DTYPE)
    lv["market"] = slot
    lv["side"], lv["price"], lv["qty"] = zip(*rows, strict=True)
    lv["recv_ts"] = ts_ns
    lv["exch_ts"] = ts_ns // 1_000_000
    assert books.apply_snapshot(slot, lv) == 0


def delta(books: BookSet, slot: int, side: int, price: int, change: int, ts_ns: int) -> int:
    rec = np.zeros(1, dtype=DELTA_DTYPE)
    rec["market"], rec["side"], rec["price"], rec["delta"] = slot, side, price, change
    rec["recv_ts"], rec["exch_ts"] = ts_ns, ts_ns // 1_000_000
    books.apply_deltas(rec)
    return int(rec["status"][0])


@pytest.fixture
def rig(tmp_path: Path) -> Any:
    cfg = EnvConfig()
    path = tmp_path / "m.zip"
    flip_flop_model(cfg).save(path)
    model = load_model(path, env_config=env_identity(cfg), name="m", version=1)
    spy = Spy(model.policy)
    model.policy = spy
    books = BookSet(4)
    tickers = ["A", "B"]
    slots = [books.slot(t) for t in tickers]
    clock = [T0]
    paper = PaperClient(books, markets=[MarketInfo(t) for t in tickers], clock=lambda: clock[0])
    actor = Actor(
        books, paper, model, tickers,
        ActorConfig(max_staleness_s=5.0, risk=RiskConfig(kill_file=str(tmp_path / "k"))),
        clock_ns=lambda: clock[0],
    )  # fmt: skip
    actor._stopped = False  # decisions without the async start (no episode store here)
    return actor, books, slots, spy, clock


def test_only_valid_fresh_wellformed_books_reach_the_policy(rig: Any) -> None:
    actor, books, (a, b), spy, clock = rig
    actor.on_books(np.array([a, b], dtype=np.int32))  # never snapshotted: invalid
    assert spy.seen == [] and actor.counts["decisions"] == 0

    snapshot(books, a, clock[0])
    actor.on_books(np.array([a], dtype=np.int32))
    assert len(spy.seen) == 1 and actor.counts["decisions"] == 1

    # stale: the book's last update is older than max_staleness_s at decision time
    clock[0] += 6 * 10**9
    actor.tick_all()
    assert actor.counts["skip_stale"] == 1 and len(spy.seen) == 1

    # invalidated by the feed (seq gap / disconnect)
    clock[0] += 10**6
    snapshot(books, a, clock[0])
    books.invalidate(a)
    actor.tick_all()
    assert actor.counts["skip_invalid"] >= 1 and len(spy.seen) == 1

    # a crossing delta: the book kernel invalidates the book, the actor never sees it
    snapshot(books, a, clock[0])
    actor.on_books(np.array([a], dtype=np.int32))
    n = len(spy.seen)
    assert delta(books, a, SIDE_YES, 460, 100, clock[0]) != 0  # 460 + 550 >= 1000: crossed
    actor.on_books(np.array([a], dtype=np.int32))
    actor.tick_all()
    assert len(spy.seen) == n

    # malformed in memory (a corrupted best cache the valid flag does not know about)
    snapshot(books, b, clock[0])
    books.best[b, SIDE_NO] = 300
    actor.tick_all()
    assert actor.counts["skip_malformed"] >= 1
    assert len(spy.seen) == n  # b never reached the policy
    for obs in spy.seen:
        assert np.all(np.isfinite(obs))


def test_live_is_refused_at_every_entry_point(tmp_path: Path) -> None:
    with pytest.raises(LiveTradingRefused, match="paper only"):
        ActorConfig(mode="live")
    with pytest.raises(LiveTradingRefused):
        create_trading_client("live", BookSet(4))
    out = subprocess.run(
        [sys.executable, "-m", "kalshi_rl.cli", "trade", "--model", "m", "--sim", "--mode", "live"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and "live execution is refused" in out.stderr


@pytest.mark.slow
async def test_live_refused_on_a_node_and_bad_books_skipped_over_websockets(
    pg_dsn: str, tmp_path: Path
) -> None:
    cfg = EnvConfig()
    await register(pg_dsn, tmp_path, "w", flip_flop_model(cfg), cfg)
    kill = str(tmp_path / "kill")
    sim = SimExchange(SimConfig(n_markets=2, autostart=False, seed=8))
    async with sim, node(sim, pg_dsn, tmp_path) as nd:
        cfg_live = ActorConfig.__new__(ActorConfig)  # a config that skipped its own check
        object.__setattr__(cfg_live, "mode", "live")
        with pytest.raises(LiveTradingRefused):
            await attach_trading(nd, "w", cfg_live)
        tr = await attach_trading(nd, "w", ActorConfig(risk=RiskConfig(kill_file=kill)))
        spy = Spy(tr.actor.model.policy)
        tr.actor.model.policy = spy
        at_start = tr.actor.counts["decisions"]  # books valid at start decided before the spy
        run, bad = tr.actor._run, []

        def checked(i: int, slot: int, recv_ns: int, flag: int) -> int:
            made = run(i, slot, recv_ns, flag)  # 1 = the policy was asked (every decision)
            if made and (not nd.books.valid(slot) or nd.books.check(slot) != 0):
                bad.append(slot)
            return made

        tr.actor._run = checked  # type: ignore[method-assign]
        await until(lambda: nd.feed.books_valid() == 2, "books valid")
        await drive(sim, 10)
        await until(lambda: len(spy.seen) > 5, "decisions")
        sim.inject_gap()  # the feed invalidates the sid's books and resyncs
        sim.send_garbage("off_grid")
        await drive(sim, 20)
        await until(lambda: nd.feed.stats.gaps >= 2, "gaps seen by the feed")
        await drive(sim, 20)
        await until(lambda: nd.feed.books_valid() == 2, "books valid again")
        await drive(sim, 10)
        for obs in spy.seen:
            assert np.all(np.isfinite(obs))
        assert bad == []  # no decision ever ran on an invalid or malformed book
        assert tr.actor.counts["decisions"] - at_start == len(spy.seen) > 10


async def test_interval_ticks_decide_without_book_updates(tmp_path: Path) -> None:
    cfg = EnvConfig()
    path = tmp_path / "m.zip"
    flip_flop_model(cfg).save(path)
    model = load_model(path, env_config=env_identity(cfg), name="m", version=1)
    books = BookSet(4)
    slot = books.slot("A")
    paper = PaperClient(books, markets=[MarketInfo("A")])
    actor = Actor(
        books, paper, model, ["A"],
        ActorConfig(tick_updates=0, tick_interval_s=0.02, max_staleness_s=0.0,
                    risk=RiskConfig(kill_file=str(tmp_path / "k"))),
    )  # fmt: skip
    snapshot(books, slot, T0)
    await actor.start()  # the valid book opens its segment at once
    assert actor.counts["decisions"] == 1
    await until(lambda: actor.counts["decisions"] >= 5, "interval decisions")
    await actor.stop()
    n = actor.counts["decisions"]
    actor.on_books(np.array([slot], dtype=np.int32))
    assert actor.counts["decisions"] == n  # stopped: nothing more
    assert actor.state.name == "STOPPED"


def test_lifecycle_moves_the_close_and_a_closed_market_opens_nothing(rig: Any) -> None:
    from kalshi_rl.kalshi.protocol import LifecycleMsg
    from kalshi_rl.trade.risk import RiskReason

    actor, books, (a, _b), _spy, clock = rig
    close_ms = clock[0] // 1_000_000 + 3_600_000
    actor.on_lifecycle(LifecycleMsg(1, "A", "close_date_updated", "", -1, 0, -1, close_ms))
    assert actor.close_ms[0] == close_ms
    actor.on_lifecycle(LifecycleMsg(1, "A", "determined", "yes", 1000, 0))
    snapshot(books, a, clock[0])
    actor.on_books(np.array([a], dtype=np.int32))  # flat: the model buys, the gate refuses
    assert actor.counts["decisions"] == 1 and actor.counts["orders"] == 0
    assert actor.risk.refused[RiskReason.CLOSE_GUARD.name] == 1
