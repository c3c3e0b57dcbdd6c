"""The local exchange: Kalshi WS v2 + REST on one port, fed by the model or a replay.

``async with SimExchange(SimConfig(...)) as sim:`` starts it on 127.0.0.1 (port 0 = a free
port) and exposes ``sim.ws_url``, ``sim.rest_url``, the sim's public books (``sim.book``),
the matching engine (``sim.engine``), fault knobs and the ``sent_messages`` log.  One port
answers (kalshi_rl.sim.http + kalshi_rl.sim.routing):

* ``GET /trade-api/ws/v2`` -> WebSocket (auth headers checked when a public key is set);
  public channels plus the private ``fill`` / ``user_orders`` / ``market_positions``
* ``GET /trade-api/v2/...`` -> market REST (see kalshi_rl.sim.rest)
* ``/trade-api/v2/portfolio/...`` -> orders, balance, positions, fills, settlements
  (kalshi_rl.sim.portfolio), matched with exact price-time priority (kalshi_rl.sim.matching)
* ``GET /sim/control/<name>`` -> fault triggers for other processes (see docs/sim.md)

This module is the composition root of the sim and its generator loop; the parts live in
their own modules: ``markets`` (model + names + public book), ``subscriptions`` (sessions,
sids, seq, commands), ``fanout`` (events -> messages), ``orders`` + ``matching`` + ``events``
+ ``accounts`` (the exchange),
``portfolio`` (REST), ``private`` (private channels), ``faults``, ``blast``, ``control``,
``routing``, ``http``.  Outgoing frames are built by ``wire`` (unmasked server frames) and
written in one ``transport.write`` per client per batch; picows handles reads, pings and
closes of upgraded connections.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

import numpy as np

from core.dtypes import SIDE_NO, SIDE_YES
from kalshi_rl.errors import ConfigError
from kalshi_rl.kalshi.protocol import KalshiErrorCode
from kalshi_rl.sim import http, rest
from kalshi_rl.sim.accounts import AccountsConfig
from kalshi_rl.sim.blast import Blast, BlastResult
from kalshi_rl.sim.config import CONTROL_PREFIX, REST_PREFIX, WS_PATH, SimConfig
from kalshi_rl.sim.control import Control
from kalshi_rl.sim.events import ModelEvents
from kalshi_rl.sim.fanout import Fanout
from kalshi_rl.sim.faults import GARBAGE_KINDS, Faults
from kalshi_rl.sim.markets import SimMarkets
from kalshi_rl.sim.matching import Engine
from kalshi_rl.sim.model import MarketModel, MarketSpec, default_markets
from kalshi_rl.sim.portfolio import Portfolio
from kalshi_rl.sim.private import PrivateFeed
from kalshi_rl.sim.routing import Authenticator, Router
from kalshi_rl.sim.subscriptions import CHANNELS, SentMessage, Subscriptions
from kalshi_rl.tasks import stop_tasks

log = logging.getLogger(__name__)

__all__ = ["CHANNELS", "GARBAGE_KINDS", "BlastResult", "SentMessage", "SimExchange"]


def _bounded_batch(n: int, took_s: float, cfg: SimConfig) -> int:
    """The next full-speed batch size: the steps that take about ``cfg.max_batch_ms``
    at the pace just measured (``n`` steps in ``took_s``), within 1..batch_steps, growing
    at most 2x a batch (a cheap batch of a quiet moment must not make the next one huge).

    Without the bound one batch of 2048 steps plus its fan-out held the event loop for
    tens of ms at a time, back to back, and a dashboard in the same process timed out on
    WebSocket handshakes."""
    target = cfg.max_batch_ms / 1000.0
    want = n * target / took_s if took_s > 0 else 2 * n
    return max(1, min(cfg.batch_steps, 2 * n, int(want)))


class SimExchange:
    """A local Kalshi exchange (see the module docstring).

    Args:
        config: the SimConfig.
        accounts: trading-account knobs (starting balance, fees, member precision).
    """

    def __init__(
        self, config: SimConfig | None = None, accounts: AccountsConfig | None = None
    ) -> None:
        self.config = cfg = config or SimConfig()
        cfg.check()
        self.accounts_config = accounts or AccountsConfig()
        self.stats: collections.Counter[str] = collections.Counter()
        specs = list(cfg.markets) if cfg.markets else default_markets(cfg.n_markets, cfg.structures)
        self._markets = SimMarkets(specs, cfg, quote=cfg.replay_session is None)
        self.hub = Subscriptions(self._markets, self.stats, cfg.record_limit)
        self.sent_messages = self.hub.sent_messages
        self.fanout = Fanout(self.hub, cfg.seed, cfg.gap_every, cfg.slow_reader_bytes)
        self.faults = Faults(self.hub)
        self.blast = Blast(self.hub)
        self.control = Control(self.faults, self._status)
        self.control.register("take", self._control_take)
        self._build_engine()
        self.auth = Authenticator(cfg.public_key_pem)
        self.router = Router(
            self.auth,
            control_token=cfg.control_token,
            new_session=self.hub.new_session,
            rest=lambda path, q: rest.handle(self._markets, path, q),
            control=self.control.handle,
            portfolio=self._portfolio,
            stats=self.stats,
        )
        self._server: asyncio.AbstractServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._fault_task: asyncio.Task[None] | None = None
        self._replay: Any = None

    def use_markets(self, markets: list[MarketSpec], quote: bool = True) -> None:
        """(Re)build the model, books and indexes for ``markets`` (before any client).

        Args:
            markets: the market specs; slot i = markets[i].
            quote: start with the model's maker ladders (False: empty books, for replay).
        """
        if self.hub.sessions:
            raise ConfigError("markets can only change before clients connect")
        self._markets = SimMarkets(markets, self.config, quote)
        self.hub.use_markets(self._markets)
        self._build_engine()

    def _build_engine(self) -> None:
        self.engine = Engine(self._markets, self.fanout, self.accounts_config, self.config.seed)
        self.events = ModelEvents(self.engine)
        self.portfolio = Portfolio(self.engine)
        self.private = PrivateFeed(self.engine, self.hub)

    def _portfolio(
        self, user: str, method: str, path: str, q: dict[str, list[str]], body: bytes
    ) -> tuple[int, bytes]:
        return self.portfolio.handle(user, method, path, q, body)

    def add_user(self, key_id: str, public_key_pem: bytes, balance: int | None = None) -> None:
        """Register a trading account signing with its own key (``balance`` in money
        units; default the starting balance)."""
        self.auth.add_key(key_id, public_key_pem)
        acc = self.engine.account(key_id)
        if balance is not None:
            acc.cash = balance

    # ----------------------------------------------------------------- the markets
    @property
    def markets(self) -> SimMarkets:
        """The model and the market names of this run."""
        return self._markets

    @property
    def model(self) -> MarketModel:
        """The market model (books, market state)."""
        return self._markets.model

    @property
    def tickers(self) -> list[str]:
        """Market tickers; slot i = tickers[i]."""
        return self._markets.tickers

    @property
    def market_ids(self) -> list[str]:
        """Kalshi ``market_id`` UUIDs by slot."""
        return self._markets.market_ids

    @property
    def slot(self) -> dict[str, int]:
        """Ticker -> slot."""
        return self._markets.slot

    @property
    def open_ts_ms(self) -> int:
        """When the markets opened (unix ms)."""
        return self._markets.open_ts_ms

    @property
    def msgs_per_step(self) -> float:
        """Messages one model step generates on average."""
        return self._markets.msgs_per_step

    @property
    def recording(self) -> bool:
        """True when sent messages are logged in ``sent_messages``."""
        return self.hub.recording

    @property
    def blast_results(self) -> list[BlastResult]:
        """What each blast achieved."""
        return self.blast.results

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Listen and (unless autostart is off) start generating."""
        cfg = self.config
        if cfg.replay_session is not None:
            from kalshi_rl.sim.replay import ReplaySource  # asyncpg only when replaying

            self._replay = await ReplaySource.load(self, cfg.replay_dsn or "", cfg.replay_session)
            self._markets.sync_public()
        if cfg.blast_frames > 0:
            self.blast.prepare(cfg.blast_frames, cfg.batch_steps)
            self._markets.sync_public()
        ws = http.WsSettings(self.router.route, cfg.ping_interval_s, cfg.pong_timeout_s)
        self._server = await http.create_server(self.router.handle_http, ws, cfg.host, cfg.port)
        # in blast mode the model is frozen after pre-generation: the sim's book must stay
        # the state a client reaches after the blast
        if cfg.autostart and cfg.blast_frames == 0:
            self._task = asyncio.create_task(self._run(), name="sim-generator")
        if cfg.faults and cfg.fault_every_s > 0:
            self._fault_task = asyncio.create_task(
                self.faults.run_schedule(cfg.faults, cfg.fault_every_s), name="sim-faults"
            )

    async def stop(self) -> None:
        """Stop generating, disconnect clients and close the port."""
        tasks, self._task, self._fault_task = (self._task, self._fault_task), None, None
        await stop_tasks(tasks)
        await self.blast.stop()
        self.disconnect_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SimExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start and run until cancelled."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._server is None:
            raise ConfigError("the sim is not started")
        sockets = getattr(self._server, "sockets", None) or []
        return int(sockets[0].getsockname()[1])

    @property
    def ws_url(self) -> str:
        """``ws://host:port/trade-api/ws/v2``."""
        return f"ws://{self.config.host}:{self.port}{WS_PATH}"

    @property
    def rest_url(self) -> str:
        """``http://host:port/trade-api/v2`` (REST base)."""
        return f"http://{self.config.host}:{self.port}{REST_PREFIX}"

    @property
    def control_url(self) -> str:
        """``http://host:port/sim/control`` (fault triggers)."""
        return f"http://{self.config.host}:{self.port}{CONTROL_PREFIX}"

    def check_auth(self, headers: Any, method: str, path: str) -> str | None:
        """None when the request is authorised, else the reason."""
        return self.auth.check(headers, method, path)

    def _status(self) -> dict[str, Any]:
        return {
            "connections": len(self.hub.sessions),
            "stats": dict(self.stats),
            "engine": dict(self.engine.stats),
            "blast": [r._asdict() for r in self.blast.results],
        }

    # ----------------------------------------------------------------- generation
    def advance(self, n_steps: int) -> int:
        """Generate ``n_steps`` model steps (or replay events) and send them now.

        While user orders rest somewhere the model is stepped one step at a time, so the
        engine sees the maker's book as it was at each event (it corrects that book when a
        user's order, not the maker, was filled).

        Returns:
            Number of events generated.
        """
        source = self._replay.next_events if self._replay is not None else self.model.step
        if not self.engine.busy():
            ev = source(n_steps)
            self.events.process(ev)
            return int(ev.shape[0])
        n = 0
        left = n_steps
        # events of markets without resting orders wait and go out in one batch after
        # the loop (per market their order is kept; every sid's seq stays contiguous)
        later: list[np.ndarray] = []
        while left > 0:
            if not self.engine.busy():
                later.append(source(left))
                break
            ev = source(1)
            left -= 1
            if self.events.touches_busy(ev):
                self.events.process(ev, flush=False)
                n += int(ev.shape[0])
            else:
                later.append(ev)
        if later:
            rest = np.concatenate(later) if len(later) > 1 else later[0]
            self.events.process(rest, flush=False)
            n += int(rest.shape[0])
        self.fanout.flush_all()
        return n

    def dispatch(self, ev: np.ndarray) -> None:
        """Run a batch of model events through the exchange and send the results."""
        self.events.process(ev)

    def has_listeners(self) -> bool:
        """True when some client holds a subscription."""
        return self.hub.has_listeners()

    def backlogged(self, limit: int = 1 << 20) -> bool:
        """True when some client has more than ``limit`` bytes not yet taken by its socket."""
        return self.hub.backlogged(limit)

    async def _run(self) -> None:
        """Generate at the configured rate (or flat out while someone listens)."""
        if self._replay is not None:
            await self._replay.run()
            return
        cfg = self.config
        loop = asyncio.get_running_loop()
        rate = cfg.wall_rate(len(self.tickers))
        t0 = loop.time()
        emitted = 0
        flat_out = cfg.batch_steps  # full-speed batch size, adapted to max_batch_ms
        while True:
            now = loop.time()
            stall_until = self.faults.stall_until
            if now < stall_until:
                await asyncio.sleep(stall_until - now)
                # the stalled interval is skipped, not replayed as a burst
                t0 += loop.time() - now
                continue
            if self.model.all_settled():
                await asyncio.sleep(0.05)
                continue
            if rate > 0:
                deficit = (now - t0) * rate - emitted
                if deficit < 1:
                    await asyncio.sleep(max(0.001, min(0.02, (1 - deficit) / rate)))
                    continue
                if deficit > 10 * cfg.batch_steps * self.msgs_per_step:
                    # fell far behind (slow loop, debugger): skip ahead instead of bursting
                    emitted += int(deficit) - cfg.batch_steps
                    continue
                n = max(1, min(cfg.batch_steps, int(deficit / self.msgs_per_step)))
            else:
                if not self.has_listeners() or self.backlogged():
                    await asyncio.sleep(0.001)
                    continue
                n = flat_out
            started = time.perf_counter()
            emitted += self.advance(n)
            if rate <= 0:
                flat_out = _bounded_batch(n, time.perf_counter() - started, cfg)
            await asyncio.sleep(0)

    # ----------------------------------------------------------------- Python API
    def book(self, ticker: str) -> dict[str, list[tuple[int, int]]]:
        """The sim's own book: ``{"yes": [(price, qty)...], "no": [...]}``, best first,
        each side on its own scale (ticks, count units)."""
        return self._markets.book(ticker)

    def inject_gap(self, sid: int | None = None) -> int:
        """Drop the next orderbook message of every orderbook sid (or one sid): the seq
        jumps by one.  Returns how many subscriptions were hit."""
        return self.faults.inject_gap(sid)

    def disconnect_all(self) -> int:
        """Drop every client connection (no close handshake). Returns how many."""
        return self.faults.disconnect_all()

    def send_garbage(self, kind: str = "non_json") -> int:
        """Send one bad message to every client with an orderbook sub (see Faults)."""
        return self.faults.send_garbage(kind)

    def stall(self, ms: int) -> None:
        """Send nothing for ``ms`` milliseconds (the generator pauses; pings continue)."""
        self.faults.stall(ms)

    def sub_error(self, code: int = KalshiErrorCode.INTERNAL, sid: int | None = None) -> int:
        """Kill live orderbook subscriptions with error ``code`` (10, 17 or 25) on their
        sid, as Kalshi does; a correct client resubscribes.  Returns subs killed."""
        return self.faults.sub_error(code, sid)

    def trigger(self, spec: str) -> int:
        """Run one fault given as text (``gap``, ``disconnect``, ``garbage[:kind]``,
        ``stall[:ms]``, ``error[:code]``); returns what it hit."""
        return self.faults.trigger(spec)

    def take(self, ticker: str, side: str, count: int, price: int | None = None) -> int:
        """A simulated taker now: buy ``count`` (count units) of ``side`` ("yes"/"no") from
        the best levels, FIFO (users' orders and maker quantity alike), at prices up to
        ``price`` (ticks on that side).  Returns the count taken."""
        if side not in ("yes", "no"):
            raise ConfigError(f"side must be 'yes' or 'no', got {side!r}")
        if count <= 0:
            raise ConfigError(f"count must be positive, got {count}")
        taker = SIDE_YES if side == "yes" else SIDE_NO
        return self.engine.sim_take(self._markets.market(ticker), taker, count, price)

    def _control_take(self, q: dict[str, list[str]]) -> int:
        price = q.get("price")
        return self.take(
            q.get("ticker", [""])[0],
            q.get("side", [""])[0],
            int(q.get("count", ["0"])[0]),
            int(price[0]) if price else None,
        )

    def sub_seq(self, conn: int, sid: int) -> int:
        """Last seq used on a sid of a connection."""
        return self.hub.sessions[conn].subs[sid].seq

    @property
    def connections(self) -> list[int]:
        """Connection numbers of the connected clients."""
        return sorted(self.hub.sessions)
