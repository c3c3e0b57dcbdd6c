"""Compatibility names for the pre-engine ``core.fills`` (wave 1).

The engine is split by job: ``core.fees`` (Kalshi fees, balance rounding),
``core.account`` (netting, settlement, valuation), ``core.orders`` (action -> order,
validity), ``core.matching`` (taker walks, liquidity consumption, maker fills),
``core.queue`` (resting-order queue models), ``core.latency``.  New code imports those;
this module only re-exports the wave-1 names so existing callers keep working.
"""

from __future__ import annotations

from core.account import account_value, apply_fill, first_record, settle
from core.fees import fee, maker_fee, order_fee, taker_fee
from core.matching import taker_fill, taker_fill_fee, taker_fill_levels
from core.queue import resting_crossed

__all__ = [
    "account_value",
    "apply_fill",
    "fee",
    "first_record",
    "maker_fee",
    "order_fee",
    "resting_crossed",
    "settle",
    "taker_fee",
    "taker_fill",
    "taker_fill_fee",
    "taker_fill_levels",
]
