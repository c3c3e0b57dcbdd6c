"""trade.risk: every limit, the state machine and the kill switch sentinel."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.dtypes import ORDER_BUY, ORDER_SELL, SIDE_NO, SIDE_YES
from kalshi_rl.errors import ConfigError
from kalshi_rl.trade.risk import (
    ActorState,
    KillSwitch,
    RiskConfig,
    RiskGate,
    RiskReason,
    flatten_order,
    reduces,
)


def gate(tmp: Path, **kw: object) -> RiskGate:
    return RiskGate(RiskConfig(kill_file=str(tmp / "kill"), **kw))  # type: ignore[arg-type]


def test_reduces_is_kalshi_netting() -> None:
    assert reduces(300, SIDE_YES, ORDER_SELL, 200)  # selling held YES
    assert not reduces(300, SIDE_YES, ORDER_SELL, 400)  # ... beyond it flips
    assert reduces(300, SIDE_NO, ORDER_BUY, 300)  # buying NO closes YES pairs
    assert reduces(-200, SIDE_YES, ORDER_BUY, 100)
    assert reduces(-200, SIDE_NO, ORDER_SELL, 200)
    assert not reduces(0, SIDE_YES, ORDER_BUY, 100)
    assert not reduces(-200, SIDE_NO, ORDER_BUY, 100)
    assert flatten_order(300) == (SIDE_YES, ORDER_SELL, 300)
    assert flatten_order(-100) == (SIDE_NO, ORDER_SELL, 100)
    assert flatten_order(0) is None


def test_position_exposure_rate_and_close_guard(tmp_path: Path) -> None:
    g = gate(tmp_path, max_position=500, max_exposure=10_000, max_orders_per_s=2, close_guard_s=30)
    assert g.check(400, SIDE_YES, ORDER_BUY, 300, 0, 100, None, 0.0) == (100, RiskReason.OK)
    assert g.check(500, SIDE_YES, ORDER_BUY, 100, 0, 100, None, 0.1) == (
        0,
        RiskReason.POSITION_LIMIT,
    )
    assert g.check(-500, SIDE_NO, ORDER_BUY, 100, 0, 100, None, 0.1)[1] == RiskReason.POSITION_LIMIT
    assert g.check(0, SIDE_YES, ORDER_BUY, 100, 9_950, 100, None, 0.2)[1] == (
        RiskReason.EXPOSURE_LIMIT
    )
    assert g.check(0, SIDE_YES, ORDER_BUY, 100, 0, 100, 10.0, 0.3)[1] == RiskReason.CLOSE_GUARD
    # reducing orders pass the guard and the caps
    assert g.check(300, SIDE_YES, ORDER_SELL, 100, 99_999, 0, 10.0, 0.4) == (100, RiskReason.OK)
    # the rate: 2 sent in [0, 1) already -> the third waits for the window
    assert g.check(300, SIDE_YES, ORDER_SELL, 100, 0, 0, None, 0.5)[1] == RiskReason.ORDER_RATE
    assert g.check(300, SIDE_YES, ORDER_SELL, 100, 0, 0, None, 1.05)[1] == RiskReason.OK
    assert g.refused["ORDER_RATE"] == 1 and g.refused["POSITION_LIMIT"] == 2


def test_drawdown_reduces_daily_loss_halts_and_resume(tmp_path: Path) -> None:
    g = gate(tmp_path, max_drawdown=1_000, daily_loss_limit=5_000)
    assert g.observe_value(100_000) == ActorState.RUNNING
    assert g.observe_value(103_000) == ActorState.RUNNING  # new peak
    assert g.observe_value(101_900) == ActorState.REDUCING  # 1_100 off the peak
    assert g.check(0, SIDE_YES, ORDER_BUY, 100, 0, 100, None, 0.0) == (0, RiskReason.REDUCING)
    assert g.check(200, SIDE_YES, ORDER_SELL, 100, 0, 0, None, 0.0) == (100, RiskReason.OK)
    assert g.observe_value(94_000) == ActorState.HALTED  # 6_000 below the day's start
    assert g.check(200, SIDE_YES, ORDER_SELL, 100, 0, 0, None, 0.0) == (0, RiskReason.HALTED)
    assert g.observe_value(200_000) == ActorState.HALTED  # a breach never lifts by itself
    g.resume()
    assert g.state == ActorState.RUNNING and g.breaches == 2


def test_kill_switch_survives_a_new_gate_and_blocks_resume(tmp_path: Path) -> None:
    ks = KillSwitch(tmp_path / "kill")
    assert not ks.engaged() and ks.info() is None
    g = gate(tmp_path)
    ks.engage("operator test")
    assert g.poll_kill() and g.state == ActorState.HALTED
    assert "operator test" in g.reason
    again = gate(tmp_path)  # a restarted actor
    assert again.state == ActorState.HALTED and "at start" in again.reason
    with pytest.raises(ConfigError, match="release it first"):
        again.resume()
    assert ks.release() and not ks.release()
    again.resume()
    assert again.state == ActorState.RUNNING


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ConfigError, match="max_position"):
        RiskConfig(max_position=-1)
    with pytest.raises(ConfigError, match="close_guard_s"):
        RiskConfig(close_guard_s=-1)
