"""Trading accounts of the local exchange: cash, positions, fees, fills, settlements.

Units (ARCHITECTURE.md): counts in hundredths, prices in ticks of $0.001, money in
$0.0001.  A fill's exact value ``count * price`` is in notional units of $0.00001
(``_e`` names; ``E_PER_MONEY`` = 10).  Fees are Kalshi's current rule (kalshi-protocol.md
§4) computed by the same kernels the env and the paper client use (``core.fees``:
``trade_fee`` rounded up to $0.0001, ``fill_balance`` flooring the balance change to the
member's precision with the per-order rounding accumulator and whole-cent rebates).

Positions net YES against NO: buying YES while holding NO redeems the pairs for $1
each (and vice versa), so a holding is one signed count (+YES / -NO).  Collateral: an
order reserves the cost of the part that opens a position, a taker fee on its whole
count and two cents for rounding (``reserve_for``); closing part of an opposite holding
needs none.  Cash therefore never goes negative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from core.dtypes import (
    MAKER_FEE_DEN,
    MAKER_FEE_NUM,
    MEMBER_CENT,
    MEMBER_DIRECT,
    NOTIONAL_DIVISOR,
    PRICE_MAX,
    SIDE_NO,
    SIDE_YES,
    TAKER_FEE_DEN,
    TAKER_FEE_NUM,
)
from core.fees import fill_balance
from core.fees import trade_fee as core_trade_fee

E_PER_MONEY = NOTIONAL_DIVISOR  # notional units ($0.00001) per money unit ($0.0001)
__all__ = ["MEMBER_CENT", "MEMBER_DIRECT", "AccountsConfig", "fill_money", "reserve_for"]


@dataclass(frozen=True)
class AccountsConfig:
    """How the exchange treats accounts.

    Attributes:
        starting_balance: money units a new account starts with ($10,000 by default).
        maker_fees: charge makers 0.0175 (series with ``quadratic_with_maker_fees``).
        member_precision: MEMBER_CENT (default, conservative) or MEMBER_DIRECT.
    """

    starting_balance: int = 10_000 * 10_000
    maker_fees: bool = False
    member_precision: int = MEMBER_CENT


def trade_fee(count: int, price: int, is_taker: bool, maker_fees: bool) -> int:
    """Kalshi's trade fee of one fill in money units (rounded up to $0.0001)."""
    if is_taker:
        return int(core_trade_fee(count, price, TAKER_FEE_NUM, TAKER_FEE_DEN))
    if maker_fees:
        return int(core_trade_fee(count, price, MAKER_FEE_NUM, MAKER_FEE_DEN))
    return 0


class FillMoney(NamedTuple):
    """The money side of one fill (money units unless named ``_e``)."""

    cash_change: int  # what the balance moved by (signed)
    trade_fee: int
    rounding_fee_e: int  # exact units, before any rebate
    rebate: int  # whole cents rebated by the order's accumulator (money units)
    acc_e: int  # the order's accumulator after this fill


def fill_money(
    revenue_e: int,
    count: int,
    price: int,
    *,
    is_taker: bool,
    acc_e: int,
    config: AccountsConfig,
) -> FillMoney:
    """Apply Kalshi's fee and rounding rule to one fill.

    Args:
        revenue_e: signed revenue of the fill in exact units (-cost, + pair redemptions).
        count, price: the fill (count units; price on the order's side, ticks).
        is_taker: taker or maker fill.
        acc_e: the order's rounding accumulator before this fill (exact units).
        config: fee knobs.

    Returns:
        FillMoney (the balance change is a multiple of the member precision).
    """
    fee = trade_fee(count, price, is_taker, config.maker_fees)
    cash, rounding_e, rebate, acc = fill_balance(revenue_e, fee, config.member_precision, acc_e)
    return FillMoney(int(cash), fee, int(rounding_e), int(rebate), int(acc))


def reserve_for(open_count: int, count: int, price: int) -> int:
    """Collateral (money) an order holds: cost of ``open_count`` at ``price``, a taker fee
    on ``count``, one cent for the rounding accumulator (it never holds more than a cent)
    and one cent for per-fill fee round-ups (< $0.0001 per fill, one taker fill per price
    level crossed).  0 when nothing opens: a closing fill's revenue exceeds its fee, so it
    never debits the balance."""
    if count <= 0 or open_count <= 0:
        return 0
    cost = -((-open_count * price) // E_PER_MONEY)
    return cost + trade_fee(count, price, True, False) + 2 * MEMBER_CENT


@dataclass
class Position:
    """One account's holding in one market (YES-positive signed count)."""

    position: int = 0
    cost_yes_e: int = 0  # what the YES held cost (exact units)
    cost_no_e: int = 0
    realized_e: int = 0
    fees_paid: int = 0  # money
    traded_e: int = 0  # sum of count * price over fills
    volume: int = 0  # count units filled
    claimed: list[int] = field(default_factory=lambda: [0, 0])  # per book side
    last_ts_ms: int = 0

    def held(self, side: int) -> int:
        """Contracts held of ``side`` (YES: position > 0; NO: position < 0)."""
        return max(self.position, 0) if side == SIDE_YES else max(-self.position, 0)

    def exposure_e(self) -> int:
        """Cost of the current holding (exact units)."""
        return self.cost_yes_e + self.cost_no_e

    def apply(self, book_side: int, count: int, price: int) -> int:
        """Add a fill buying ``count`` of ``book_side`` at ``price``; returns revenue (E).

        Pairs with the opposite holding are redeemed at $1 each; the realized P&L of
        that close is booked against the held side's average cost.
        """
        opp = SIDE_NO if book_side == SIDE_YES else SIDE_YES
        held = self.held(opp)
        pairs = min(count, held)
        if pairs:
            cost_opp = self.cost_no_e if opp == SIDE_NO else self.cost_yes_e
            removed = cost_opp * pairs // held
            if opp == SIDE_NO:
                self.cost_no_e -= removed
            else:
                self.cost_yes_e -= removed
            self.realized_e += pairs * PRICE_MAX - pairs * price - removed
        opened = count - pairs
        if book_side == SIDE_YES:
            self.cost_yes_e += opened * price
            self.position += count
        else:
            self.cost_no_e += opened * price
            self.position -= count
        self.traded_e += count * price
        self.volume += count
        return pairs * PRICE_MAX - count * price


class Settlement(NamedTuple):
    """One market settled for one account (Kalshi's ``settlement`` object)."""

    ticker: str
    result: str  # "yes" | "no"
    yes_count: int
    no_count: int
    yes_cost_e: int
    no_cost_e: int
    revenue: int  # money paid out
    ts_ms: int


@dataclass
class Account:
    """One trading account (an API key id)."""

    user: str
    cash: int  # money units; never negative
    positions: dict[int, Position] = field(default_factory=dict)
    fills: list[tuple[Any, int]] = field(default_factory=list)  # (matching.Fill, position after)
    settlements: list[Settlement] = field(default_factory=list)
    reserved: int = 0  # money held by resting orders

    @property
    def balance(self) -> int:
        """Available for new orders (money units)."""
        return self.cash - self.reserved

    def position(self, m: int) -> Position:
        """The position in market ``m`` (created empty)."""
        pos = self.positions.get(m)
        if pos is None:
            pos = self.positions[m] = Position()
        return pos

    def settle(self, m: int, ticker: str, result_yes: bool, ts_ms: int) -> Settlement | None:
        """Pay out the holding in ``m`` at $1 per winning contract; None if flat."""
        pos = self.positions.get(m)
        if pos is None or (pos.position == 0 and pos.exposure_e() == 0):
            return None
        yes, no = pos.held(SIDE_YES), pos.held(SIDE_NO)
        won = yes if result_yes else no
        revenue_e = won * PRICE_MAX
        revenue = revenue_e // E_PER_MONEY
        self.cash += revenue
        s = Settlement(
            ticker, "yes" if result_yes else "no", yes, no, pos.cost_yes_e, pos.cost_no_e,
            revenue, ts_ms,
        )  # fmt: skip
        pos.realized_e += revenue_e - pos.exposure_e()
        pos.position = 0
        pos.cost_yes_e = pos.cost_no_e = 0
        pos.last_ts_ms = ts_ms
        self.settlements.append(s)
        return s
