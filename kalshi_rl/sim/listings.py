"""Rolling listings: series of short-lived markets listed one after another.

Kalshi lists many markets as *series* of short-lived contracts: a 15-minute crypto market
closes and the next one is already open.  A :class:`SeriesSpec` describes one such series
(lifetime, listing cadence, price structure, planted bias); :class:`ListingSchedule` turns
a tuple of series into the sequence of :class:`Listing` s in creation order.  The market
model (:class:`kalshi_rl.sim.model.MarketModel`) takes the listings as they fall due,
puts each into a free book slot (a settled market's slot is reused) and runs its life:
created (``initialized``) ``lead_ms`` before it opens, open, closed, determined, settled.

This module is pure bookkeeping (no numba, no I/O): times are unix ms of the sim clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from core.dtypes import SIM_DEFAULT_BIAS
from kalshi_rl.errors import ConfigError
from kalshi_rl.sim.grid import PriceLevelStructure, parse_structure

# The default planted bias of every default series (1.0 = Kalshi-wide calibration).
DEFAULT_BIAS = SIM_DEFAULT_BIAS


@dataclass(frozen=True)
class SeriesSpec:
    """One series of rolling markets.

    Attributes:
        ticker: series ticker (market tickers are ``<series>-<close time>-T0``).
        title: human title; each market's title adds its close time.
        structure: price_level_structure of its markets.
        lifetime_ms: open -> close of each market.
        every_ms: time between two openings (None = ``lifetime_ms``: the next market opens
            as the previous one closes, like Kalshi's 15-minute series).
        lead_ms: a market is created (REST ``initialized``) this long before it opens.
        offset_ms: markets open at ``start + offset_ms + k * period``; the one open at the
            start (k = -1) opens then, with what is left of its life.
        bias: planted mispricing knob of the series (0 = efficient; see model.py).
        category: Kalshi-style category label (REST ``category``).
    """

    ticker: str
    title: str
    structure: PriceLevelStructure = PriceLevelStructure.LINEAR_CENT
    lifetime_ms: int = 180_000
    every_ms: int | None = None
    lead_ms: int = 10_000
    offset_ms: int = 0
    bias: float = DEFAULT_BIAS
    category: str = "Simulated"

    @property
    def period_ms(self) -> int:
        """Time between two openings."""
        return self.every_ms if self.every_ms is not None else self.lifetime_ms

    def check(self) -> None:
        """Raise ConfigError naming the first bad field."""
        if not self.ticker or not self.ticker.replace("_", "").isalnum():
            raise ConfigError(f"series ticker must be alphanumeric, got {self.ticker!r}")
        if self.lifetime_ms < 1000:
            raise ConfigError(f"{self.ticker}: lifetime_ms must be >= 1000, got {self.lifetime_ms}")
        if self.period_ms < 1000:
            raise ConfigError(f"{self.ticker}: every_ms must be >= 1000, got {self.period_ms}")
        if self.lead_ms < 0 or self.offset_ms < 0:
            raise ConfigError(f"{self.ticker}: lead_ms and offset_ms must be >= 0")
        if self.bias < 0:
            raise ConfigError(f"{self.ticker}: bias must be >= 0, got {self.bias}")


class Listing(NamedTuple):
    """One market of a series, as the schedule lists it."""

    serial: int  # listing number over all series, 0, 1, 2, ... in creation order
    series: int  # index into the schedule's series
    ticker: str
    event_ticker: str
    title: str
    structure: PriceLevelStructure
    bias: float
    create_ts: int
    open_ts: int
    close_ts: int


def default_series(
    n: int = 4,
    lifetime_ms: int = 180_000,
    bias: float = DEFAULT_BIAS,
    lead_ms: int = 10_000,
) -> tuple[SeriesSpec, ...]:
    """``n`` series with staggered openings (a market settles every lifetime/n ms).

    Structures go round robin over deci_cent, linear_cent, tapered_deci_cent.
    """
    if n < 1:
        raise ConfigError(f"need at least one series, got {n}")
    names = ("SIMBTC", "SIMETH", "SIMSPX", "SIMWX", "SIMFED", "SIMPOP", "SIMGEO", "SIMEUR")
    structs = (
        PriceLevelStructure.DECI_CENT,
        PriceLevelStructure.LINEAR_CENT,
        PriceLevelStructure.TAPERED_DECI_CENT,
    )
    out = []
    for i in range(n):
        name = names[i] if i < len(names) else f"SIMS{i:03d}"
        out.append(
            SeriesSpec(
                ticker=name,
                title=f"Simulated series {name}",
                structure=structs[i % len(structs)],
                lifetime_ms=lifetime_ms,
                lead_ms=lead_ms,
                offset_ms=(i * lifetime_ms) // n,
                bias=bias,
            )
        )
    return tuple(out)


def parse_series(text: str) -> SeriesSpec:
    """A series from ``TICKER[:lifetime_ms[:bias[:structure]]]`` (CLI form)."""
    parts = text.split(":")
    try:
        spec = SeriesSpec(
            ticker=parts[0],
            title=f"Simulated series {parts[0]}",
            lifetime_ms=int(parts[1]) if len(parts) > 1 and parts[1] else 180_000,
            bias=float(parts[2]) if len(parts) > 2 and parts[2] else DEFAULT_BIAS,
            structure=parse_structure(parts[3])
            if len(parts) > 3
            else PriceLevelStructure.LINEAR_CENT,
        )
    except ValueError as exc:
        raise ConfigError(f"bad series {text!r} (TICKER[:lifetime_ms[:bias[:structure]]])") from exc
    spec.check()
    return spec


def _close_code(ms: int) -> str:
    """Kalshi-style date code of a close time: ``26DEC011515`` (+ seconds when not 0)."""
    t = datetime.fromtimestamp(ms / 1000, tz=UTC)
    code = t.strftime("%y%b%d%H%M").upper()
    return (
        code
        + (f"{t.second:02d}" if t.second or ms % 1000 else "")
        + (f"{ms % 1000:03d}" if ms % 1000 else "")
    )


class ListingSchedule:
    """The listings of ``series`` from ``ts0`` on, handed out in creation order.

    Args:
        series: the series (tickers unique).
        ts0: sim clock start, unix ms.
    """

    def __init__(self, series: tuple[SeriesSpec, ...], ts0: int) -> None:
        if not series:
            raise ConfigError("a listing schedule needs at least one series")
        for s in series:
            s.check()
        if len({s.ticker for s in series}) != len(series):
            raise ConfigError("series tickers must be unique")
        self.series = series
        self.ts0 = ts0
        # the market of each series that would be open at ts0 is listed at ts0 (it opens
        # then, and closes on the series' rhythm), so every series trades from the start
        self._next_open = [
            ts0 + s.offset_ms - (s.period_ms if s.offset_ms > 0 else 0) for s in series
        ]
        self._serial = 0

    def slots_needed(self, determine_delay_ms: int, settle_delay_ms: int) -> int:
        """Book slots that keep every series listing on time (a slot frees at settle)."""
        total = 0
        for s in self.series:
            life = s.lead_ms + s.lifetime_ms + determine_delay_ms + settle_delay_ms
            total += math.ceil(life / s.period_ms) + 1
        return total

    def _create_ts(self, i: int) -> int:
        return max(self.ts0, self._next_open[i] - self.series[i].lead_ms)

    def next_create_ts(self) -> int:
        """When the next listing falls due."""
        return min(self._create_ts(i) for i in range(len(self.series)))

    def due(self, now: int) -> list[Listing]:
        """Every listing created at or before ``now``, oldest first (then removed)."""
        out: list[Listing] = []
        while True:
            i = min(range(len(self.series)), key=self._create_ts)
            create = self._create_ts(i)
            if create > now:
                return out
            s = self.series[i]
            nominal_open = self._next_open[i]
            open_ts = max(self.ts0, nominal_open)
            close_ts = nominal_open + s.lifetime_ms
            if close_ts - open_ts < 1000:  # would close (almost) before the sim starts
                self._next_open[i] = nominal_open + s.period_ms
                continue
            event = f"{s.ticker}-{_close_code(close_ts)}"
            closes = datetime.fromtimestamp(close_ts / 1000, tz=UTC).strftime("%H:%M:%S")
            out.append(
                Listing(
                    serial=self._serial,
                    series=i,
                    ticker=f"{event}-T0",
                    event_ticker=event,
                    title=f"{s.title}: above 0 at {closes} UTC?",
                    structure=s.structure,
                    bias=s.bias,
                    create_ts=create,
                    open_ts=open_ts,
                    close_ts=close_ts,
                )
            )
            self._serial += 1
            self._next_open[i] = nominal_open + s.period_ms
