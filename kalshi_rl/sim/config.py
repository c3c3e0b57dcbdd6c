"""SimConfig: every knob of the local exchange, one frozen object."""

from __future__ import annotations

from dataclasses import dataclass, field

from kalshi_rl.errors import ConfigError
from kalshi_rl.sim.listings import SeriesSpec
from kalshi_rl.sim.model import MarketSpec, ModelParams

# Messages/s whose sim clock is the reference pace: ``rate=0`` (as fast as possible) keeps
# the market this rate would make (same events, same timestamps), only sooner.
REFERENCE_RATE = 200.0
WS_PATH = "/trade-api/ws/v2"
REST_PREFIX = "/trade-api/v2"
CONTROL_PREFIX = "/sim/control"
FAULT_NAMES = ("gap", "disconnect", "garbage", "stall", "error")


@dataclass(frozen=True)
class SimConfig:
    """Configuration of one :class:`kalshi_rl.sim.server.SimExchange`.

    Attributes:
        host, port: where to listen (port 0 = any free port; see ``SimExchange.port``).
        n_markets: number of generated fixed markets (ignored when ``markets`` or
            ``series`` is given).
        markets: explicit fixed market specs.
        series: rolling listings (kalshi_rl.sim.listings): series of short-lived markets
            listed, opened, closed, determined and settled continuously (replaces the
            fixed markets).
        slots: book slots for rolling markets (None: as many as the series need).
        structures: price_level_structures assigned round robin to generated markets.
        rate: total messages/s to aim for (0 = as fast as the sockets take them).  The
            sim clock advances so that ``rate`` messages make one second of sim time
            (REFERENCE_RATE for ``rate=0``): the market looks the same at any rate.
        rate_per_market: if set, overrides ``rate`` with ``rate_per_market * markets``
            (series count in rolling mode).
        clock_speed: sim seconds per wall second (messages/s = rate * clock_speed): the
            same event stream, generated faster (fast mode; ``rate=0`` is the limit).
        step_ms: sim ms per model step (None: from the rate; fixes the market's pace).
        seed: seed of the model's numpy Generator.
        start_ts_ms: sim clock start (unix ms; None = wall clock at start).
        model: market model knobs.
        public_key_pem: RSA public key checked on the handshake and REST (None = no auth).
        ping_interval_s, pong_timeout_s: server pings (body ``heartbeat``) and pong deadline
            (capped at the interval).
        autostart: run the generator task; False = drive it with ``SimExchange.advance``.
        batch_steps: most model steps generated per batch.
        max_batch_ms: at full speed (``rate=0``) a batch is sized to take about this much
            wall time (generation + fan-out), then the generator yields the event loop, so
            a dashboard or feed sharing the process stays responsive.
        slow_reader_bytes: a client whose unsent backlog exceeds this gets error 25 on
            its sids and loses them (Kalshi's slow-reader behaviour).
        blast_frames: >0 enables blast mode with this many pre-encoded delta frames.
        replay_session, replay_dsn, replay_speed: serve a recorded feed session from
            PostgreSQL instead of the model; speed 1.0 = recorded pace, 0 = max speed.
        record_limit: how many sent messages ``sent_messages`` keeps (0 = none).
        gap_every: drop every n-th orderbook message of each sid (a seq gap), 0 = never.
        faults, fault_every_s: fault specs (``SimExchange.trigger`` form, e.g. ``gap``,
            ``disconnect``, ``garbage:off_grid``, ``stall:500``, ``error:17``) fired in
            turn every ``fault_every_s`` seconds (0 = off).
    """

    host: str = "127.0.0.1"
    port: int = 0
    n_markets: int = 20
    markets: tuple[MarketSpec, ...] | None = None
    series: tuple[SeriesSpec, ...] | None = None
    slots: int | None = None
    structures: tuple[str, ...] = ("linear_cent", "tapered_deci_cent", "deci_cent")
    rate: float = 200.0
    rate_per_market: float | None = None
    clock_speed: float = 1.0
    step_ms: float | None = None
    seed: int = 1
    start_ts_ms: int | None = None
    model: ModelParams = field(default_factory=ModelParams)
    public_key_pem: bytes | None = None
    ping_interval_s: float = 10.0
    pong_timeout_s: float = 10.0
    autostart: bool = True
    batch_steps: int = 2048
    max_batch_ms: float = 4.0
    slow_reader_bytes: int = 64 * 1024 * 1024
    blast_frames: int = 0
    replay_session: int | None = None
    replay_dsn: str | None = None
    replay_speed: float = 0.0
    record_limit: int = 1_000_000
    gap_every: int = 0
    faults: tuple[str, ...] = ()
    fault_every_s: float = 0.0
    # Bearer token for /sim/control; required when binding a non-loopback host.
    control_token: str | None = field(default=None, repr=False)

    def check(self) -> None:
        """Raise ConfigError naming the first bad setting."""
        if self.rate < 0 or (self.rate_per_market is not None and self.rate_per_market < 0):
            raise ConfigError("rate must be >= 0 (0 = as fast as possible)")
        if self.clock_speed <= 0 or (self.step_ms is not None and self.step_ms <= 0):
            raise ConfigError("clock_speed and step_ms must be positive")
        if self.series is not None and self.markets is not None:
            raise ConfigError("give fixed markets or rolling series, not both")
        if self.series is not None and not self.series:
            raise ConfigError("series must name at least one series")
        if self.markets is None and self.series is None and self.n_markets < 1:
            raise ConfigError(f"n_markets must be >= 1, got {self.n_markets}")
        if self.replay_session is not None and not self.replay_dsn:
            raise ConfigError("replay_session needs replay_dsn (a PostgreSQL DSN)")
        if self.replay_speed < 0:
            raise ConfigError(f"replay_speed must be >= 0, got {self.replay_speed}")
        if self.ping_interval_s <= 0 or self.pong_timeout_s <= 0:
            raise ConfigError("ping_interval_s and pong_timeout_s must be positive")
        if self.max_batch_ms <= 0:
            raise ConfigError(f"max_batch_ms must be positive, got {self.max_batch_ms}")
        if self.batch_steps < 1 or self.blast_frames < 0 or self.gap_every < 0:
            raise ConfigError("batch_steps must be >= 1; blast_frames, gap_every >= 0")
        if self.fault_every_s < 0:
            raise ConfigError(f"fault_every_s must be >= 0, got {self.fault_every_s}")
        for spec in self.faults:
            if spec.partition(":")[0] not in FAULT_NAMES:
                raise ConfigError(f"unknown fault {spec!r} (valid: {', '.join(FAULT_NAMES)})")
        if not _is_loopback(self.host) and not self.control_token:
            raise ConfigError(
                f"host {self.host!r} is not loopback: /sim/control would be exposed; set a"
                " control token (--control-token or KALSHI_RL_SIM_CONTROL_TOKEN)"
            )
        self.model.check()

    def total_rate(self, n_markets: int) -> float:
        """Messages/s of one sim second over all markets (0 = unlimited)."""
        if self.series is not None:
            n_markets = len(self.series)
        if self.rate_per_market is not None:
            return self.rate_per_market * n_markets
        return self.rate

    def wall_rate(self, n_markets: int) -> float:
        """Messages/s of wall time the generator aims for (0 = unlimited)."""
        return self.total_rate(n_markets) * self.clock_speed

    def ms_per_step(self, msgs_per_step: float, n_markets: int) -> float:
        """Sim ms per model step: ``step_ms``, else what the rate makes one sim second."""
        if self.step_ms is not None:
            return self.step_ms
        rate = self.total_rate(n_markets) or REFERENCE_RATE
        return 1000.0 * msgs_per_step / rate


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
