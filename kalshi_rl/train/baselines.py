"""Rule-based policies to compare trained agents against (vectorised over envs).

Every policy maps a batch of observations [N, N_FEATURES] and action masks [N, 5] to
actions [N] (core.dtypes ACT_*); an action the mask forbids becomes hold.  They read the
observation by feature name (core.features tables), so they see exactly what agents see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from core.dataset import Dataset
from core.dtypes import (
    ACT_BUY_NO,
    ACT_BUY_YES,
    ACT_HOLD,
    ACT_SELL_NO,
    ACT_SELL_YES,
    RESULT_NO,
    RESULT_YES,
    SIM_BIAS_FAVORITE,
    SIM_BIAS_LONGSHOT,
    SIM_DEFAULT_BIAS,
    TAKER_FEE_DEN,
    TAKER_FEE_NUM,
)
from core.features import ACCOUNT_FEATURE_NAMES, MARKET_FEATURE_NAMES, N_MARKET_FEATURES

if TYPE_CHECKING:
    from kalshi_rl.env.batch import EnvBatch

_YES_BID = MARKET_FEATURE_NAMES.index("yes_bid")
_YES_ASK = MARKET_FEATURE_NAMES.index("yes_ask")
_NO_BID = MARKET_FEATURE_NAMES.index("no_bid")
_NO_ASK = MARKET_FEATURE_NAMES.index("no_ask")
_MID = MARKET_FEATURE_NAMES.index("mid")
_TWO_SIDED = MARKET_FEATURE_NAMES.index("two_sided")
_RET_20 = MARKET_FEATURE_NAMES.index("ret_20")
_POSITION = N_MARKET_FEATURES + ACCOUNT_FEATURE_NAMES.index("position")
_TAKER_RATE = TAKER_FEE_NUM / TAKER_FEE_DEN


class Policy(Protocol):
    """Anything that picks actions for a batch of envs."""

    name: str

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Actions int64 [N] for observations [N, F] and masks bool [N, 5]."""
        ...


def masked(actions: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``actions`` with every action the mask forbids replaced by hold."""
    ok = masks[np.arange(actions.shape[0]), actions]
    return np.where(ok, actions, ACT_HOLD).astype(np.int64)


class HoldPolicy:
    """Never trade (P&L 0: the floor every agent must beat)."""

    name = "hold"

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return np.full(obs.shape[0], ACT_HOLD, dtype=np.int64)


class RandomPolicy:
    """Uniform over the valid actions (seeded)."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        # pick the argmax of masked uniform noise: uniform over the allowed actions
        noise = self._rng.random(masks.shape)
        return np.argmax(np.where(masks, noise, -1.0), axis=1).astype(np.int64)


class CheaperSidePolicy:
    """Always buy the side with the lower ask (YES if tied) until the position limit."""

    name = "cheaper_side"

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        a = np.where(obs[:, _YES_ASK] <= obs[:, _NO_ASK], ACT_BUY_YES, ACT_BUY_NO)
        return masked(a, masks)


class MeanReversionPolicy:
    """Fade 20-step mid moves; close a position once the move has reverted.

    Args:
        threshold: |ret_20| (feature units: $0.10) that opens a position; 0.3 = 3 cents.
    """

    name = "mean_reversion"

    def __init__(self, threshold: float = 0.3) -> None:
        self.threshold = threshold

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        ret = obs[:, _RET_20]
        pos = obs[:, _POSITION]
        a = np.full(obs.shape[0], ACT_HOLD, dtype=np.int64)
        a[ret < -self.threshold] = ACT_BUY_YES  # fell: expect a rise
        a[ret > self.threshold] = ACT_BUY_NO  # rose: expect a fall
        a[(pos > 0) & (ret > 0)] = ACT_SELL_YES
        a[(pos < 0) & (ret < 0)] = ACT_SELL_NO
        return masked(a, masks)


def taker_fee(price: np.ndarray) -> np.ndarray:
    """Kalshi's taker fee per contract at ``price`` dollars (before rounding)."""
    return _TAKER_RATE * price * (1.0 - price)


class OraclePolicy:
    """Perfect foresight: knows each settled market's result and buys the winning side while
    it costs less than it pays (net of the fee), up to the position limit; holds otherwise.

    It trades through the same env (fills, fees, limits), so its P&L is what foresight can
    make here: the bound the evaluation reports next to every policy.  Unsettled segments
    (result unknown) it holds.  ``bind`` is called by ``evaluate.run_policy``.
    """

    name = "oracle"

    def __init__(self) -> None:
        self._batch: EnvBatch | None = None
        self._result: np.ndarray | None = None

    def bind(self, batch: EnvBatch, dataset: Dataset) -> None:
        """Read the segments the envs trade from ``batch`` and their results."""
        self._batch = batch
        self._result = np.asarray(dataset.seg_result)

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        if self._batch is None or self._result is None:
            raise RuntimeError("OraclePolicy.act before bind(): run it through evaluate()")
        res = self._result[self._batch.state["seg"][: obs.shape[0]]]
        yes_ask = obs[:, _YES_ASK]
        no_ask = obs[:, _NO_ASK]
        a = np.full(obs.shape[0], ACT_HOLD, dtype=np.int64)
        buy_yes = (res == RESULT_YES) & (yes_ask > 0) & (yes_ask + taker_fee(yes_ask) < 1.0)
        buy_no = (res == RESULT_NO) & (no_ask > 0) & (no_ask + taker_fee(no_ask) < 1.0)
        a[buy_yes] = ACT_BUY_YES
        a[buy_no] = ACT_BUY_NO
        return masked(a, masks)


def fair_from_quote(q: np.ndarray, bias: float, longshot: float, favorite: float) -> np.ndarray:
    """Invert the sim's planted distortion (kalshi_rl.sim.model.quote_logit): the fair YES
    probability behind a quoted YES probability ``q`` (0 < q < 1)."""
    lq = np.log(q / (1.0 - q))
    lp = np.where(lq < 0, lq / (1.0 - longshot * bias), lq / (1.0 + favorite * bias))
    return 1.0 / (1.0 + np.exp(-lp))


class BiasAwarePolicy:
    """A rule that knows the sim's planted bias (docs/sim.md): it undoes the distortion of
    the quoted mid to get the fair probability, buys the side whose ask (plus the taker
    fee) is below its fair value by ``margin``, and sells a held side whose bid exceeds its
    fair value (plus fee) by ``margin``.  Positions otherwise ride to settlement.

    Args:
        bias: the sim's bias knob (None: SIM_DEFAULT_BIAS, the default sim's).
        longshot, favorite: the sim's ``bias_longshot`` / ``bias_favorite`` (core.dtypes).
        margin: edge in dollars per contract required to trade.
    """

    name = "bias_aware"

    def __init__(
        self,
        bias: float | None = None,
        longshot: float = SIM_BIAS_LONGSHOT,
        favorite: float = SIM_BIAS_FAVORITE,
        margin: float = 0.005,
    ) -> None:
        self.bias = SIM_DEFAULT_BIAS if bias is None else bias
        self.longshot = longshot
        self.favorite = favorite
        self.margin = margin

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        two = obs[:, _TWO_SIDED] > 0.5
        q = np.clip(obs[:, _MID], 1e-4, 1 - 1e-4)
        fair = fair_from_quote(q, self.bias, self.longshot, self.favorite)
        yes_ask, no_ask = obs[:, _YES_ASK], obs[:, _NO_ASK]
        yes_bid, no_bid = obs[:, _YES_BID], obs[:, _NO_BID]
        edge_yes = fair - yes_ask - taker_fee(yes_ask)
        edge_no = (1.0 - fair) - no_ask - taker_fee(no_ask)
        pos = obs[:, _POSITION]
        a = np.full(obs.shape[0], ACT_HOLD, dtype=np.int64)
        a[two & (edge_yes > self.margin) & (edge_yes >= edge_no)] = ACT_BUY_YES
        a[two & (edge_no > self.margin) & (edge_no > edge_yes)] = ACT_BUY_NO
        sell_yes = two & (pos > 0) & (yes_bid - taker_fee(yes_bid) - fair > self.margin)
        sell_no = two & (pos < 0) & (no_bid - taker_fee(no_bid) - (1.0 - fair) > self.margin)
        a[sell_yes] = ACT_SELL_YES
        a[sell_no] = ACT_SELL_NO
        return masked(a, masks)


class ModelPolicy:
    """A trained SB3 model (deterministic actions by default), masked like the rules.

    Args:
        model: an SB3 algorithm with ``predict``.
        name: label in reports.
    """

    def __init__(self, model: Any, name: str = "agent", deterministic: bool = True) -> None:
        self.model = model
        self.name = name
        self.deterministic = deterministic

    def act(self, obs: np.ndarray, masks: np.ndarray) -> np.ndarray:
        actions, _ = self.model.predict(obs, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64).reshape(obs.shape[0])


def baseline_policies(seed: int = 0) -> list[Policy]:
    """The naive comparison set: hold, random, cheaper side, mean reversion."""
    return [HoldPolicy(), RandomPolicy(seed), CheaperSidePolicy(), MeanReversionPolicy()]


def reference_policies(bias: float | None = None) -> list[Policy]:
    """What knowledge buys: the bias-aware rule and the perfect-foresight oracle."""
    return [BiasAwarePolicy(bias), OraclePolicy()]
