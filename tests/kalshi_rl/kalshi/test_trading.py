"""kalshi.trading decoders and the money vocabulary of kalshi.protocol (the client itself is
exercised end to end against the sim in tests/kalshi_rl/sim/test_orders.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kalshi_rl.errors import ProtocolError
from kalshi_rl.kalshi import protocol as p
from kalshi_rl.kalshi.trading import decode_ack, decode_fill, decode_order, parse_money


@given(st.integers(-(10**12), 10**12))
def test_money_round_trips(money: int) -> None:
    assert p.parse_money(p.format_money(money)) == money


@pytest.mark.parametrize(
    ("s", "v"), [("0.1", 1000), ("12.3456", 123_456), ("-0.0050", -50), ("3", 30_000),
                 ("1.50000", 15_000)],
)  # fmt: skip
def test_parse_money_exact(s: str, v: int) -> None:
    assert parse_money(s) == v


@pytest.mark.parametrize("s", ["0.00001", "1e3", "", "-", "0x10", " 1.0", "1.2.3", None, 5])
def test_parse_money_rejects(s: object) -> None:
    with pytest.raises(ProtocolError):
        parse_money(s)


def test_decoders_read_v2_and_legacy_shapes() -> None:
    ack = decode_ack({"order_id": "o", "client_order_id": "c", "fill_count": "1.50",
                      "remaining_count": "0.50", "average_fill_price": "0.4250",
                      "average_fee_paid": None, "ts_ms": 7})  # fmt: skip
    assert (ack.fill_count, ack.remaining_count, ack.average_fill_price) == (150, 50, 4250)
    legacy = {"order_id": "o", "ticker": "T", "side": "no", "action": "buy", "status": "resting",
              "yes_price_dollars": "0.4200", "initial_count_fp": "2.00", "fill_count_fp": "0.00",
              "remaining_count_fp": "2.00"}  # fmt: skip
    o = decode_order(legacy)
    assert (o.book_side, o.yes_price, o.remaining_count, o.queue_position) == (
        "ask",
        420,
        200,
        None,
    )
    f = decode_fill({"trade_id": "t", "order_id": "o", "market_ticker": "T", "side": "yes",
                     "action": "sell", "yes_price_dollars": "0.5500", "count_fp": "3.00",
                     "is_taker": True, "fee_cost": "0.0116", "ts": 1700000000})  # fmt: skip
    assert (f.book_side, f.qty, f.fee, f.ts_ms, f.ticker) == ("ask", 300, 116, 1700000000000, "T")
    with pytest.raises(ProtocolError):
        decode_order({**legacy, "yes_price_dollars": "0.42001"})
