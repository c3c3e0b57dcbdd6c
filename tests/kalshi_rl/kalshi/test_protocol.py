"""Decoder on literal frames (the protocol doc's own examples), exact number parsing,
rejection accounting, and the command encoders."""

from __future__ import annotations

import uuid
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.dtypes import NO_PRICE, NO_TS, SIDE_NO, SIDE_NONE, SIDE_YES, TAKER_NO
from kalshi_rl.kalshi import protocol as p


def test_doc_snapshot_example() -> None:
    frame = (
        b'{"type":"orderbook_snapshot","sid":2,"seq":2,"msg":{"market_ticker":"FED-23DEC-T3.00",'
        b'"market_id":"9b0f","yes_dollars_fp":[["0.0800","300.00"],["0.2200","333.00"]],'
        b'"no_dollars_fp":[["0.5400","20.00"],["0.5600","146.00"]]}}'
    )
    rec = p.Decoder().decode(frame)
    assert isinstance(rec, p.SnapshotMsg)
    assert (rec.sid, rec.seq, rec.ticker, rec.ts_ms) == (2, 2, "FED-23DEC-T3.00", NO_TS)
    lv = rec.levels
    assert lv["side"].tolist() == [SIDE_YES, SIDE_YES, SIDE_NO, SIDE_NO]
    assert lv["price"].tolist() == [80, 220, 540, 560]
    assert lv["qty"].tolist() == [30000, 33300, 2000, 14600]
    assert set(lv["sid"].tolist()) == {2} and set(lv["seq"].tolist()) == {2}


def test_empty_snapshot_is_one_marker_row() -> None:
    rec = p.Decoder().decode(
        b'{"type":"orderbook_snapshot","sid":3,"seq":1,"msg":{"market_ticker":"X"}}'
    )
    assert isinstance(rec, p.SnapshotMsg)
    assert len(rec.levels) == 1
    row = rec.levels[0]
    assert (row["side"], row["price"], row["qty"]) == (SIDE_NONE, NO_PRICE, 0)


def test_doc_delta_example() -> None:
    frame = (
        b'{"type":"orderbook_delta","sid":2,"seq":3,"msg":{"market_ticker":"FED-23DEC-T3.00",'
        b'"market_id":"9b0f","price_dollars":"0.960","delta_fp":"-54.00","side":"yes",'
        b'"ts":"2022-11-22T20:44:01Z","ts_ms":1669149841000}}'
    )
    assert p.Decoder().decode(frame) == p.DeltaMsg(
        2, 3, "FED-23DEC-T3.00", SIDE_YES, 960, -5400, 1669149841000
    )


def test_trade_ticker_lifecycle_and_acks() -> None:
    tid = "c5b0c1f2-9d61-4a8f-8a1e-0123456789ab"
    d = p.Decoder()
    t = d.decode(
        orjson.dumps(
            {
                "type": "trade",
                "sid": 5,
                "msg": {
                    "trade_id": tid,
                    "market_ticker": "M",
                    "yes_price_dollars": "0.3600",
                    "no_price_dollars": "0.6400",
                    "count_fp": "12.50",
                    "taker_side": "no",
                    "ts_ms": 1700000000000,
                },
            }
        )
    )
    assert isinstance(t, p.TradeMsg)
    assert (t.yes_price, t.size, t.taker_side) == (360, 1250, TAKER_NO)
    assert (t.trade_id_hi << 64 | t.trade_id_lo) == uuid.UUID(tid).int
    k = d.decode(
        orjson.dumps(
            {
                "type": "ticker",
                "sid": 6,
                "msg": {
                    "market_ticker": "M",
                    "price_dollars": "0.36",
                    "yes_bid_dollars": "0.35",
                    "yes_ask_dollars": "0.37",
                    "ts_ms": 1,
                },
            }
        )
    )
    assert k == p.TickerMsg(6, "M", 360, 350, 370, 1)
    lc = d.decode(
        orjson.dumps(
            {
                "type": "market_lifecycle_v2",
                "sid": 7,
                "msg": {
                    "market_ticker": "M",
                    "event_type": "determined",
                    "result": "yes",
                    "settlement_value_dollars": "1.0000",
                },
            }
        )
    )
    assert lc == p.LifecycleMsg(7, "M", "determined", "yes", 1000, NO_TS)
    # created / close_date_updated carry the market's times in unix seconds -> ms
    body = {"market_ticker": "N", "event_type": "created", "open_ts": 1700, "close_ts": 1760}
    created = d.decode(orjson.dumps({"type": "market_lifecycle_v2", "sid": 7, "msg": body}))
    assert created == p.LifecycleMsg(7, "N", "created", "", NO_PRICE, NO_TS, 1_700_000, 1_760_000)
    assert p.encode_subscribe_all(3, ["market_lifecycle_v2"]) == orjson.dumps(
        {"id": 3, "cmd": "subscribe", "params": {"channels": ["market_lifecycle_v2"]}}
    )
    assert d.decode(
        b'{"id":1,"type":"subscribed","msg":{"channel":"orderbook_delta","sid":1}}'
    ) == p.SubscribedMsg(1, 1, "orderbook_delta")
    assert d.decode(b'{"id":102,"sid":2,"seq":7,"type":"unsubscribed"}') == p.UnsubscribedMsg(
        102, 2, 7
    )
    assert d.decode(
        b'{"id":123,"sid":456,"seq":222,"type":"ok","msg":{"market_tickers":["A"]}}'
    ) == p.OkMsg(123, 456, 222, ("A",), ())
    ls = d.decode(b'{"id":9,"type":"ok","msg":[{"channel":"trade","sid":4}]}')
    assert isinstance(ls, p.OkMsg) and ls.subscriptions == (("trade", 4),)
    e = d.decode(b'{"id":123,"type":"error","msg":{"code":6,"msg":"Already subscribed"}}')
    assert e == p.ErrorMsg(123, 0, 6, "Already subscribed")
    e2 = d.decode(b'{"id":0,"sid":4,"type":"error","msg":{"code":25,"msg":"overflow"}}')
    assert isinstance(e2, p.ErrorMsg) and e2.sid == 4 and e2.code in p.RESUBSCRIBE_CODES
    assert d.stats.total == 0


@pytest.mark.parametrize(
    ("s", "ticks"),
    [
        ("0", 0),
        ("1", 1000),
        ("1.0000", 1000),
        ("0.5", 500),
        ("0.960", 960),
        ("0.0800", 80),
        ("0.001", 1),
        ("0.0010", 1),
        ("0.999000", 999),
        ("0.00", 0),
    ],
)
def test_price_exact(s: str, ticks: int) -> None:
    assert p.parse_price(s) == ticks


@pytest.mark.parametrize(
    ("s", "reason"),
    [
        ("0.0005", p.Reason.OFF_GRID_PRICE),
        ("0.9601", p.Reason.OFF_GRID_PRICE),
        ("1.001", p.Reason.OFF_GRID_PRICE),
        ("2", p.Reason.OFF_GRID_PRICE),
        ("-0.5", p.Reason.BAD_FIELD),
        ("", p.Reason.BAD_FIELD),
        (".5", p.Reason.BAD_FIELD),
        ("0.5e1", p.Reason.BAD_FIELD),
        ("0._5", p.Reason.BAD_FIELD),
        (" 0.5", p.Reason.BAD_FIELD),
        ("0.²", p.Reason.BAD_FIELD),
        ("0.1234567", p.Reason.BAD_FIELD),
        ("10.0", p.Reason.BAD_FIELD),
    ],
)
def test_price_rejects(s: str, reason: p.Reason) -> None:
    with pytest.raises(p.DecodeError) as ei:
        p.parse_price(s)
    assert ei.value.reason == reason


@pytest.mark.parametrize(
    ("s", "n"),
    [
        ("300.00", 30000),
        ("-54.00", -5400),
        ("0.01", 1),
        ("7", 700),
        ("1.5", 150),
        ("+2.00", 200),
        ("12.500", 1250),
        ("0", 0),
    ],
)
def test_count_exact(s: str, n: int) -> None:
    assert p.parse_count(s) == n


@pytest.mark.parametrize("s", ["1.001", "0.005", "abc", "", "-", "1.", "1e3", "1_0.00", "--1"])
def test_count_rejects(s: str) -> None:
    with pytest.raises(p.DecodeError) as ei:
        p.parse_count(s)
    assert ei.value.reason in (p.Reason.BAD_COUNT, p.Reason.BAD_FIELD)


@given(st.integers(0, 1000), st.integers(0, 3))
def test_price_roundtrip_matches_decimal(ticks: int, extra_zeros: int) -> None:
    s = p.format_price(ticks)[: 5 if ticks % 10 else 4] + "0" * extra_zeros
    assert p.parse_price(s) == ticks == int(Decimal(s) * 1000)


@given(st.integers(-(10**12), 10**12))
def test_count_roundtrip_matches_decimal(n: int) -> None:
    s = p.format_count(n)
    assert p.parse_count(s) == n == int(Decimal(s) * 100)


def test_rejections_counted_by_reason_never_raise() -> None:
    d = p.Decoder()
    bad_delta = {
        "type": "orderbook_delta",
        "sid": 1,
        "seq": 9,
        "msg": {
            "market_ticker": "M",
            "price_dollars": "0.4205",
            "delta_fp": "1.00",
            "side": "yes",
            "ts_ms": 1,
        },
    }
    frames: list[bytes] = [
        b"\x00garbage{",
        b"[1,2,3]",
        b'{"type":"weird","sid":1}',
        b'{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"M"}}',
        orjson.dumps(bad_delta),
        orjson.dumps(
            {**bad_delta, "msg": {**bad_delta["msg"], "price_dollars": "0.42", "delta_fp": "1.005"}}
        ),
        orjson.dumps(
            {**bad_delta, "msg": {**bad_delta["msg"], "price_dollars": "0.42", "side": "maybe"}}
        ),
        orjson.dumps({**bad_delta, "seq": "9"}),
        orjson.dumps(
            {
                "type": "trade",
                "sid": 5,
                "msg": {
                    "trade_id": "nope",
                    "market_ticker": "M",
                    "yes_price_dollars": "0.36",
                    "count_fp": "1.00",
                    "taker_side": "yes",
                    "ts_ms": 1,
                },
            }
        ),
        b'"just a string"',
    ]
    # the feed hands picows payloads as memoryviews: log sampling must cope with them
    d.stats.log_interval_s = 0.0
    out = [d.decode(memoryview(f)) for f in frames]
    assert d.stats.errors == {
        "not_json": 1,
        "not_object": 2,
        "unknown_type": 1,
        "missing_field": 1,
        "off_grid_price": 1,
        "bad_count": 1,
        "bad_field": 2,
        "bad_uuid": 1,
    }
    assert d.stats.total == len(frames)
    # envelope intact -> BadBookMsg so the feed keeps seq and resyncs that market
    assert out[3] == p.BadBookMsg(1, 2, "M", "missing_field")
    assert out[4] == p.BadBookMsg(1, 9, "M", "off_grid_price")
    assert out[7] is None  # seq itself unusable
    assert all(o is None for i, o in enumerate(out) if i not in (3, 4, 5, 6))


def test_encoders() -> None:
    sub = orjson.loads(p.encode_subscribe(1, ["A", "B"]))
    assert sub == {
        "id": 1,
        "cmd": "subscribe",
        "params": {
            "channels": ["orderbook_delta", "trade", "ticker", "market_lifecycle_v2"],
            "market_tickers": ["A", "B"],
            "use_yes_price": False,
        },
    }
    assert orjson.loads(p.encode_unsubscribe(2, [3, 4])) == {
        "id": 2,
        "cmd": "unsubscribe",
        "params": {"sids": [3, 4]},
    }
    for action in ("add_markets", "delete_markets", "get_snapshot"):
        assert orjson.loads(p.encode_update_subscription(3, 7, action, ["A"])) == {
            "id": 3,
            "cmd": "update_subscription",
            "params": {"sids": [7], "action": action, "market_tickers": ["A"]},
        }
    with pytest.raises(ValueError, match="not supported"):
        p.encode_update_subscription(3, 7, "drop", ["A"])
    assert orjson.loads(p.encode_list_subscriptions(4)) == {"id": 4, "cmd": "list_subscriptions"}


def test_server_encoders_roundtrip() -> None:
    d = p.Decoder()
    assert d.decode(
        p.encode_delta(1, 2, "M", side=SIDE_NO, price=7, delta=-123, ts_ms=99)
    ) == p.DeltaMsg(1, 2, "M", SIDE_NO, 7, -123, 99)
    s = d.decode(p.encode_snapshot(1, 1, "M", [(420, 100)], []))
    assert isinstance(s, p.SnapshotMsg)
    assert s.levels[["side", "price", "qty"]].tolist() == [(SIDE_YES, 420, 100)]
