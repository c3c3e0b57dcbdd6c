"""The frozen, typed configuration of the trading environments (one object per env).

Every number is in the project's integer units unless the name says otherwise: counts in
hundredths of a contract, prices in ticks of $0.001, money in units of $0.0001.
Its JSON form (``as_dict``) is hashed into a model's ``config_hash``.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from core.dtypes import COUNT_SCALE, MARK_LIQUIDATION, MARK_MID, MEMBER_CENT, MONEY_SCALE
from kalshi_rl.errors import EnvError


class SegmentOrder(enum.IntEnum):
    """How an env picks the segment of its next episode."""

    RANDOM = 0  # uniform over segments, from the env's seeded RNG
    SEQUENTIAL = 1  # segments in order, shared cursor over all envs (evaluation)


class MarkMode(enum.IntEnum):
    """How an open position is valued (reward, observation, end-of-episode mark)."""

    LIQUIDATION = MARK_LIQUIDATION  # what it could be sold for now: walk the held side's bids
    MID = MARK_MID  # the two-sided mid; liquidation value when the book is not two-sided


class ActionMode(enum.IntEnum):
    """The action space of the env."""

    DISCRETE = 0  # Discrete(5): hold, buy YES, sell YES, buy NO, sell NO; fixed size/slippage
    MULTI = 1  # MultiDiscrete([5, len(slippage_choices), len(size_choices)])


@dataclass(frozen=True)
class EnvConfig:
    """Settings of ``KalshiTradingEnv`` / ``KalshiVecEnv``.

    Attributes:
        order_size: contracts per order, count units (100 = one contract).
        slippage_ticks: a taker order's limit is the touch price +/- this many ticks; the
            fill walks the opposite ladder up to that limit (partial fills allowed).
        max_position: largest |position| allowed, count units; buys beyond it are masked.
        start_cash: account cash at episode start, money units.
        member_precision: balance precision of the account in money (100 = $0.01 for
            non-direct members, the default; 1 = $0.0001 direct): Kalshi floors every fill's
            balance change to it (rounding fee, rebated per order by its accumulator).
        entry_latency_ms: (min, max) order-entry delay, uniform; min == max is constant.
        ack_latency_ms: (min, max) acknowledgement delay; no new order before the ack.
        mark_mode: LIQUIDATION (default) or MID, see MarkMode.
        count_lot: fill granularity in count units (1 = fractional contracts, 100 = whole).
        reward_scale: reward = change of account value in dollars times this.
        inventory_penalty: shaping, dollars per contract held per step (times reward_scale).
        trade_penalty: shaping, dollars per executed trade (times reward_scale).
        max_episode_steps: truncate an episode after this many steps (0 = only at segment end).
        segment_order: RANDOM (training) or SEQUENTIAL (evaluation).
        random_start: start an episode at a random row of the first ``start_fraction`` of the
            segment instead of its first row.
        start_fraction: see ``random_start``.
        action_mode: DISCRETE or MULTI (see ActionMode).
        slippage_choices: MULTI mode: limit offsets (ticks) selectable per action.
        size_choices: MULTI mode: order sizes (count units) selectable per action.
    """

    order_size: int = 1 * COUNT_SCALE
    slippage_ticks: int = 20
    max_position: int = 10 * COUNT_SCALE
    start_cash: int = 1_000 * MONEY_SCALE
    member_precision: int = MEMBER_CENT
    entry_latency_ms: tuple[int, int] = (50, 50)
    ack_latency_ms: tuple[int, int] = (50, 50)
    mark_mode: MarkMode = MarkMode.LIQUIDATION
    count_lot: int = 1
    reward_scale: float = 1.0
    inventory_penalty: float = 0.0
    trade_penalty: float = 0.0
    max_episode_steps: int = 0
    segment_order: SegmentOrder = SegmentOrder.RANDOM
    random_start: bool = False
    start_fraction: float = 0.5
    action_mode: ActionMode = ActionMode.DISCRETE
    slippage_choices: tuple[int, ...] = (0, 10, 50)
    size_choices: tuple[int, ...] = (1 * COUNT_SCALE, 5 * COUNT_SCALE)

    def __post_init__(self) -> None:
        checks = (
            (self.order_size > 0, f"order_size must be > 0 count units, got {self.order_size}"),
            (self.slippage_ticks >= 0, f"slippage_ticks must be >= 0, got {self.slippage_ticks}"),
            (self.max_position > 0, f"max_position must be > 0, got {self.max_position}"),
            (self.start_cash > 0, f"start_cash must be > 0 money units, got {self.start_cash}"),
            (
                self.member_precision in (1, 10, 100),
                f"member_precision must be 1, 10 or 100 money, got {self.member_precision}",
            ),
            (_ms_range_ok(self.entry_latency_ms), "entry_latency_ms must be 0 <= min <= max"),
            (_ms_range_ok(self.ack_latency_ms), "ack_latency_ms must be 0 <= min <= max"),
            (self.count_lot > 0, f"count_lot must be > 0, got {self.count_lot}"),
            (self.max_episode_steps >= 0, "max_episode_steps must be >= 0"),
            (0.0 < self.start_fraction <= 1.0, "start_fraction must be in (0, 1]"),
            (len(self.slippage_choices) > 0, "slippage_choices must not be empty"),
            (len(self.size_choices) > 0, "size_choices must not be empty"),
            (all(s >= 0 for s in self.slippage_choices), "slippage_choices must be >= 0"),
            (all(s > 0 for s in self.size_choices), "size_choices must be > 0"),
        )
        for ok, msg in checks:
            if not ok:
                raise EnvError(msg)

    def as_dict(self) -> dict[str, object]:
        """JSON-able form (enums by name, tuples as lists), for config hashes and the registry."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.name if isinstance(v, enum.Enum) else v
        return out

    def replace(self, **changes: object) -> EnvConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def _ms_range_ok(r: tuple[int, int]) -> bool:
    return len(r) == 2 and 0 <= r[0] <= r[1]
