"""Market lifecycle on the wire: ``market_lifecycle_v2`` bodies and slot reuse.

The model emits EV_LIFECYCLE events (side = LC_*): LC_CREATED when a rolling listing takes
a slot (``qty`` = its listing serial), LC_ACTIVATED when it opens, LC_CLOSED at close,
LC_DETERMINED (``price`` = result), LC_SETTLED.  Kalshi sends ``created``, ``determined``
and ``settled`` on ``market_lifecycle_v2`` (plus an ``event_lifecycle`` message when a new
event is created); opening at ``open_time`` and closing at ``close_time`` are time based
and have **no** WebSocket event (docs.kalshi.com, Market Lifecycle) -- REST status shows
them.  The sim does the same.

When a slot is reused the subscriptions that named the old ticker lose that slot (their
ticker is gone); subscriptions to every market (``markets is None``) keep it and so see
the new market, as Kalshi's lifecycle channel does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.dtypes import LC_CREATED, LC_DETERMINED, LC_SETTLED, PRICE_MAX, RESULT_YES
from kalshi_rl.sim.grid import DOLLARS
from kalshi_rl.sim.model import empty_book

if TYPE_CHECKING:
    from kalshi_rl.sim.model import MarketModel, MarketSpec
    from kalshi_rl.sim.subscriptions import Subscriptions


def created_body(spec: MarketSpec, ticker: str) -> dict[str, Any]:
    """``created`` message body of a listed market (times in unix seconds, as Kalshi)."""
    open_s = (spec.open_ts or 0) // 1000
    close_s = (spec.close_ts or 0) // 1000
    return {
        "market_ticker": ticker,
        "event_type": "created",
        "open_ts": open_s,
        "close_ts": close_s,
        "additional_metadata": {
            "name": spec.title,
            "title": spec.title,
            "yes_sub_title": "Above 0",
            "no_sub_title": "0 or below",
            "rules_primary": "Resolves YES if the simulated score is above 0 at close.",
            "can_close_early": False,
            "expected_expiration_ts": close_s,
            "strike_type": "greater",
            "floor_strike": "0",
        },
    }


def event_created_body(spec: MarketSpec) -> dict[str, Any]:
    """``event_lifecycle`` body for the event of a newly listed market."""
    return {
        "event_ticker": spec.event_ticker,
        "title": spec.title,
        "sub_title": spec.series,
        "collateral_return_type": "",
        "series_ticker": spec.series,
        "strike_date": (spec.close_ts or 0) // 1000,
    }


def lifecycle_body(  # noqa: PLR0917 -- one field per event column
    model: MarketModel, ticker: str, m: int, event: int, result: int, ts: int
) -> dict[str, Any] | None:
    """The ``market_lifecycle_v2`` body of one LC_* event (None: no WS message)."""
    if event == LC_CREATED:
        spec = model.markets[m]
        return None if spec is None else created_body(spec, ticker)
    if event == LC_DETERMINED:
        return {
            "market_ticker": ticker,
            "event_type": "determined",
            "result": "yes" if result == RESULT_YES else "no",
            "determination_ts": ts // 1000,
            "settlement_value": DOLLARS[PRICE_MAX if result == RESULT_YES else 0],
        }
    if event == LC_SETTLED:
        return {"market_ticker": ticker, "event_type": "settled", "settled_ts": ts // 1000}
    return None  # LC_ACTIVATED / LC_CLOSED: time-based, no WS event on Kalshi


def reuse_slot(hub: Subscriptions, m: int, serial: int) -> MarketSpec:
    """Give slot ``m`` to listing ``serial``: names, ids and subscriptions follow.

    Returns:
        The new market's spec.
    """
    _slot, spec = hub.markets.model.listing(serial)
    old = hub.markets.tickers[m]
    hub.markets.rename(m, spec.ticker)
    # The public book starts as the model's book was when the market was listed: empty
    # (MarketModel.list_market empties it).  It must not be copied from the model now: the
    # model has already run this whole batch, so a market that opens inside the batch (the
    # ones listed at the sim's start open at once) would get the batch's quotes twice,
    # once copied and once as the batch's deltas -- a crossed book the feed resyncs forever.
    empty_book(hub.markets.books, m)
    # Markets listed at the sim's start are named before their ``created`` event is sent
    # (REST lists them at once): a subscription to that ticker keeps it.
    if old and old != spec.ticker:
        for idx in hub.index.values():
            for sub in list(idx[m]):
                if sub.markets is not None:  # it named the old ticker: that market is gone
                    sub.markets.discard(m)
                    idx[m].remove(sub)
    return spec
