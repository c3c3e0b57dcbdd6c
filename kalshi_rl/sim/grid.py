"""Kalshi price-level structures as integer tick grids, and fixed-point string encoders.

Prices are ticks of $0.001 (core.dtypes units); a market's grid is the ascending array of
prices it may quote, strictly between 0 and PRICE_MAX.  The same grid serves YES and NO
prices because every Kalshi structure is symmetric around $0.50.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np

from core.dtypes import PRICE_MAX
from kalshi_rl.errors import ConfigError
from kalshi_rl.kalshi.protocol import format_count, format_price

# The wire spelling is kalshi.protocol's; these names are the sim's short aliases.
dollars = format_price
count_fp = format_count


class PriceLevelStructure(StrEnum):
    """Kalshi's ``price_level_structure`` values."""

    LINEAR_CENT = "linear_cent"
    TAPERED_DECI_CENT = "tapered_deci_cent"
    DECI_CENT = "deci_cent"


# (start, end, step) in ticks; ``end`` exclusive on the grid but reported as Kalshi does.
_RANGES: dict[PriceLevelStructure, tuple[tuple[int, int, int], ...]] = {
    PriceLevelStructure.LINEAR_CENT: ((0, 1000, 10),),
    PriceLevelStructure.TAPERED_DECI_CENT: ((0, 100, 1), (100, 900, 10), (900, 1000, 1)),
    PriceLevelStructure.DECI_CENT: ((0, 1000, 1),),
}


def parse_structure(name: str) -> PriceLevelStructure:
    """The structure called ``name``; ConfigError listing the valid names if unknown."""
    try:
        return PriceLevelStructure(name)
    except ValueError as exc:
        valid = ", ".join(s.value for s in PriceLevelStructure)
        raise ConfigError(f"unknown price_level_structure {name!r} (valid: {valid})") from exc


def price_grid(structure: PriceLevelStructure) -> np.ndarray:
    """Ascending int16 array of the prices (ticks) a market with ``structure`` may quote."""
    prices: set[int] = set()
    for start, end, step in _RANGES[structure]:
        prices.update(range(start, end + 1, step))
    return np.array(sorted(p for p in prices if 0 < p < PRICE_MAX), dtype=np.int16)


def price_ranges(structure: PriceLevelStructure) -> list[dict[str, str]]:
    """Kalshi's ``price_ranges`` list for ``structure`` (dollar strings)."""
    return [
        {"start": dollars(s), "end": dollars(e), "step": dollars(st)}
        for s, e, st in _RANGES[structure]
    ]


# Lookup tables: encoding a message is then string concatenation, no arithmetic.
DOLLARS = tuple(dollars(p) for p in range(PRICE_MAX + 1))
