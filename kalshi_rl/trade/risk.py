"""The actor's risk limits and its kill switch.

Every order the actor wants to send passes :meth:`RiskGate.check` first.  Limits:

* ``max_position``  -- largest |position| per market (count units); buys beyond are clipped.
* ``max_exposure``  -- largest total money at risk (sum of cost bases over markets);
  an order that would open more is refused.
* ``max_orders_per_s`` -- orders sent in any rolling second; more are refused (counted).
* ``daily_loss_limit`` -- account value below the day's starting value by this much
  -> HALTED.
* ``max_drawdown`` -- account value below its running peak by this much -> REDUCING.
* ``close_guard_s`` -- no position-opening order in the last N seconds before a market
  closes (reducing orders still go).

States (:class:`ActorState`): RUNNING trades normally; REDUCING lets only orders through
that shrink a held position; HALTED lets nothing through (the actor cancels every resting
order on entering it, and flattens when ``flatten_on_halt``); STOPPED is the actor off.
A breach only ever moves the state down (RUNNING -> REDUCING -> HALTED); an operator
``resume`` moves it back up once the breach is gone.

The kill switch is a sentinel file (``KillSwitch``): ``kalshi-rl trade kill`` and the
web API create it, the actor polls it, and a restarted actor that finds it starts HALTED.
Only ``kalshi-rl trade kill --release`` (or the API) removes it.
"""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.dtypes import ORDER_BUY, ORDER_SELL, SIDE_NO, SIDE_YES
from kalshi_rl.errors import ConfigError
from kalshi_rl.trade.decide import (
    LIM_CLOSE_GUARD_S,
    LIM_LEN,
    LIM_MAX_EXPOSURE,
    LIM_MAX_ORDERS_PER_S,
    LIM_MAX_POSITION,
    risk_check,
)

log = logging.getLogger(__name__)


class ActorState(enum.IntEnum):
    """What the actor may do (lower = more restricted, except STOPPED)."""

    RUNNING = 0
    REDUCING = 1
    HALTED = 2
    STOPPED = 3


class RiskReason(enum.IntEnum):
    """Why the gate refused or clipped an order (stored in action records)."""

    OK = 0
    HALTED = 1
    REDUCING = 2  # only position-reducing orders while REDUCING
    POSITION_LIMIT = 3
    EXPOSURE_LIMIT = 4
    ORDER_RATE = 5
    CLOSE_GUARD = 6
    KILLED = 7


@dataclass(frozen=True)
class RiskConfig:
    """Risk limits of one actor (money in $0.0001 units, counts in hundredths).

    Attributes:
        max_position: per market |position| cap, count units (0 = no cap beyond the model's).
        max_exposure: total cost basis cap over all markets, money (0 = none).
        max_orders_per_s: orders per rolling second (0 = unlimited).
        daily_loss_limit: loss from the day's start value that halts, money (0 = none).
        max_drawdown: drop from the peak value that moves to REDUCING, money (0 = none).
        close_guard_s: no opening orders this close to a market's close (seconds).
        flatten_on_halt: on HALTED also send orders that close every position.
        kill_file: the kill switch's sentinel file (None = the default under the data dir).
    """

    max_position: int = 0
    max_exposure: int = 0
    max_orders_per_s: float = 0.0
    daily_loss_limit: int = 0
    max_drawdown: int = 0
    close_guard_s: float = 60.0
    flatten_on_halt: bool = False
    kill_file: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_position", "max_exposure", "daily_loss_limit", "max_drawdown"):
            if getattr(self, name) < 0:
                raise ConfigError(f"risk {name} must be >= 0 (0 = off), got {getattr(self, name)}")
        if self.max_orders_per_s < 0 or self.close_guard_s < 0:
            raise ConfigError("risk max_orders_per_s and close_guard_s must be >= 0")


def default_kill_file() -> Path:
    """``<data dir>/trade.kill``."""
    from kalshi_rl.store import db

    return db.default_data_dir() / "trade.kill"


class KillSwitch:
    """A sentinel file: present = killed.  Survives restarts by construction."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_kill_file()

    def engage(self, reason: str = "kill switch") -> None:
        """Create the sentinel (atomically) with who/why/when."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"reason": reason, "ts": time.time(), "pid": os.getpid()}))
        tmp.replace(self.path)
        log.warning("kill switch engaged (%s): %s", self.path, reason)

    def release(self) -> bool:
        """Remove the sentinel; True if it was there."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.warning("kill switch released (%s)", self.path)
        return True

    def engaged(self) -> bool:
        """True while the sentinel exists."""
        return self.path.exists()

    def info(self) -> dict[str, Any] | None:
        """The sentinel's content, or None when not engaged."""
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {"reason": "unreadable sentinel"}
        return data


def reduces(position: int, side: int, action: int, count: int) -> bool:
    """True when the order only shrinks |position| (never flips or opens).

    Args:
        position: signed count units (+YES / -NO).
        side, action: SIDE_* and ORDER_*; count: count units (> 0).
    """
    # buying YES or selling NO moves the position up; buying NO or selling YES moves it down
    up = (side == SIDE_YES) == (action == ORDER_BUY)
    if up:
        return position < 0 and count <= -position
    return position > 0 and count <= position


class RiskGate:
    """State machine + per-order checks (see the module docstring)."""

    def __init__(self, config: RiskConfig, kill: KillSwitch | None = None) -> None:
        self.config = config
        self.kill = kill or KillSwitch(config.kill_file)
        self.state = ActorState.RUNNING
        self.reason = ""
        # the kernel form of the limits (kalshi_rl.trade.decide.risk_check) and the
        # order-rate window: a ring of the last send times (ns), counters (head, tail)
        self.limits = np.zeros(LIM_LEN, dtype=np.float64)
        self.limits[LIM_MAX_POSITION] = config.max_position
        self.limits[LIM_MAX_EXPOSURE] = config.max_exposure
        self.limits[LIM_MAX_ORDERS_PER_S] = config.max_orders_per_s
        self.limits[LIM_CLOSE_GUARD_S] = config.close_guard_s
        self.sent = np.zeros(math.ceil(config.max_orders_per_s) + 1, dtype=np.int64)
        self.sent_ctl = np.zeros(2, dtype=np.int64)
        self.day = time.gmtime().tm_yday
        self.day_start_value: int | None = None
        self.peak_value: int | None = None
        self.refused: dict[str, int] = {r.name: 0 for r in RiskReason if r != RiskReason.OK}
        self.breaches = 0
        if self.kill.engaged():
            info = self.kill.info() or {}
            self.halt(f"kill switch engaged at start: {info.get('reason', '?')}")

    # ------------------------------------------------------------------ state
    def halt(self, reason: str) -> bool:
        """Move to HALTED; True if that is a change."""
        return self._down(ActorState.HALTED, reason)

    def reduce(self, reason: str) -> bool:
        """Move to REDUCING (from RUNNING); True if that is a change."""
        return self._down(ActorState.REDUCING, reason)

    def _down(self, state: ActorState, reason: str) -> bool:
        if self.state >= state:
            return False
        log.warning("risk: %s -> %s (%s)", self.state.name, state.name, reason)
        self.state = state
        self.reason = reason
        self.breaches += 1
        return True

    def resume(self) -> None:
        """Back to RUNNING (operator).  Refused while the kill switch is engaged."""
        if self.kill.engaged():
            raise ConfigError(f"kill switch {self.kill.path} is engaged: release it first")
        self.state = ActorState.RUNNING
        self.reason = ""
        self.peak_value = None  # the drawdown is measured afresh
        self.day_start_value = None

    def observe_value(self, value: int, now: float | None = None) -> ActorState:
        """Feed the account value (money); applies the loss and drawdown limits."""
        cfg = self.config
        day = time.gmtime(now).tm_yday if now is not None else time.gmtime().tm_yday
        if day != self.day or self.day_start_value is None:
            self.day = day
            self.day_start_value = value
        if self.peak_value is None or value > self.peak_value:
            self.peak_value = value
        if cfg.daily_loss_limit and self.day_start_value - value >= cfg.daily_loss_limit:
            self.halt(f"daily loss {self.day_start_value - value} >= {cfg.daily_loss_limit}")
        elif cfg.max_drawdown and self.peak_value - value >= cfg.max_drawdown:
            self.reduce(f"drawdown {self.peak_value - value} >= {cfg.max_drawdown}")
        return self.state

    def poll_kill(self) -> bool:
        """Check the sentinel; HALT when engaged.  True if this call halted the actor."""
        if self.state != ActorState.HALTED and self.kill.engaged():
            info = self.kill.info() or {}
            return self.halt(f"kill switch: {info.get('reason', '?')}")
        return False

    # ------------------------------------------------------------------ orders
    def check(  # noqa: PLR0917 -- the order and its context, positionally
        self,
        position: int,
        side: int,
        action: int,
        count: int,
        exposure: int,
        order_cost: int,
        seconds_to_close: float | None,
        now: float,
    ) -> tuple[int, RiskReason]:
        """The count that may be sent (0 = refused) and why it was cut.

        Args:
            position: the market's signed position (count units).
            side, action, count: the order (SIDE_*, ORDER_*, count units > 0).
            exposure: current total cost basis over all markets (money).
            order_cost: the most money the order can add to the exposure (0 if reducing).
            seconds_to_close: until the market closes (None = unknown).
            now: monotonic seconds (order-rate window).
        """
        allowed, why = risk_check(
            int(self.state), self.limits, self.sent, self.sent_ctl, position, side, action,
            count, exposure, order_cost,
            math.nan if seconds_to_close is None else float(seconds_to_close),
            round(now * 1e9),
        )  # fmt: skip
        return self.counted(int(allowed), int(why))

    def counted(self, allowed: int, why: int) -> tuple[int, RiskReason]:
        """A ``risk_check`` outcome, with a refusal counted by reason."""
        r = RiskReason(why)
        if allowed <= 0:
            self.refused[r.name] += 1
        return allowed, r

    def stats(self) -> dict[str, Any]:
        """State, reason, refusals by reason, limits in force."""
        return {
            "state": self.state.name,
            "reason": self.reason,
            "refused": dict(self.refused),
            "breaches": self.breaches,
            "kill_engaged": self.kill.engaged(),
            "kill_file": str(self.kill.path),
            "peak_value": self.peak_value,
            "day_start_value": self.day_start_value,
        }


def flatten_order(position: int) -> tuple[int, int, int] | None:
    """(side, action, count) that closes ``position`` by selling what is held, or None."""
    if position > 0:
        return SIDE_YES, ORDER_SELL, position
    if position < 0:
        return SIDE_NO, ORDER_SELL, -position
    return None
