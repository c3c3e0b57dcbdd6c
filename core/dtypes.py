"""Every record layout and constant of kalshi-rl, in one place.

Units (see ARCHITECTURE.md):

* price  -- integer ticks of $0.001 on the YES scale unless a field says NO, 0..1000.
* count  -- integer hundredths of a contract (Kalshi's ``*_fp`` strings have 2 decimals).
* money  -- integer units of $0.0001.
* time   -- exchange timestamps in unix milliseconds (``*_ts_ms`` / ``exch_ts``),
            local receive timestamps in unix nanoseconds (``recv_ts``).

Kalshi books hold bids only: YES bids and NO bids.  A YES ask at ``p`` is a NO bid at
``PRICE_MAX - p``.  We store both bid ladders and derive asks.

No other module defines a record layout, a side/event constant or a sentinel.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- units
PRICE_SCALE = 1000  # ticks per dollar ($0.001 ticks)
PRICE_MIN = 0
PRICE_MAX = 1000
N_PRICES = PRICE_MAX + 1  # book ladder length (index == price in ticks)
COUNT_SCALE = 100  # count units per contract (hundredths)
MONEY_SCALE = 10_000  # money units per dollar ($0.0001)
# money units for count (hundredths) x price (ticks): c/100 * p/1000 dollars = c*p/10 money.
NOTIONAL_DIVISOR = (COUNT_SCALE * PRICE_SCALE) // MONEY_SCALE  # == 10
PAYOUT_PER_CONTRACT = MONEY_SCALE  # a winning contract pays $1 = 10_000 money units
# money per count unit of a redeemed YES+NO pair (or a winning contract): $1 / 100 = 100.
PAIR_MONEY_PER_COUNT = PAYOUT_PER_CONTRACT // COUNT_SCALE

# --------------------------------------------------------------------------- sides
SIDE_YES = 0
SIDE_NO = 1
N_SIDES = 2
SIDE_NONE = -1  # e.g. the marker row of an empty snapshot

# taker side of a trade / the side an action buys
TAKER_YES = SIDE_YES
TAKER_NO = SIDE_NO

# --------------------------------------------------------------------------- sentinels
NO_PRICE = -1  # "no level": empty side, no best bid, unknown price
NO_SEQ = -1  # no sequence number seen yet
NO_TS = -1  # unknown timestamp
NO_MARKET = -1  # unallocated book slot

# --------------------------------------------------------------------------- event kinds
EV_SNAPSHOT = 1
EV_DELTA = 2
EV_TRADE = 3
EV_GAP = 4  # a sequence gap / disconnect invalidated a book
EV_LIFECYCLE = 5
EV_FAIR = 6  # sim calibration only: qty = fair YES probability * FAIR_SCALE after a trade
FAIR_SCALE = 1_000_000_000

# --------------------------------------------------------------------------- status codes
# Kernels never raise; they return one of these.  Python turns them into counters/errors.
ST_OK = 0
ST_NEGATIVE = 1  # a delta would make a level negative (desync)
ST_CROSSED = 2  # best YES bid + best NO bid >= PRICE_MAX (crossed or locked book)
ST_INVALID_BOOK = 3  # the book is marked invalid; the update was not applied
ST_BAD_PRICE = 4  # price outside PRICE_MIN..PRICE_MAX
ST_BAD_SIDE = 5
ST_BAD_MARKET = 6  # book slot out of range
ST_FULL = 7  # ring buffer full (records not pushed)

STATUS_NAMES = {
    ST_OK: "ok",
    ST_NEGATIVE: "negative_level",
    ST_CROSSED: "crossed_book",
    ST_INVALID_BOOK: "invalid_book",
    ST_BAD_PRICE: "bad_price",
    ST_BAD_SIDE: "bad_side",
    ST_BAD_MARKET: "bad_market",
    ST_FULL: "ring_full",
}

# --------------------------------------------------------------------------- book meta
BOOK_META_DTYPE = np.dtype(
    [
        ("valid", np.uint8),  # 1 once a snapshot was applied and no gap/desync since
        ("status", np.int8),  # last non-OK status code (ST_*) seen on this book
        ("sid", np.int32),  # subscription id the book is fed by (-1 none)
        ("last_seq", np.int64),  # seq of the last message applied
        ("last_exch_ts", np.int64),  # exchange ts (ms) of the last update
        ("last_recv_ts", np.int64),  # local receive ts (ns) of the last update
        ("n_updates", np.int64),  # snapshots + deltas applied since start
        ("n_snapshots", np.int64),
    ],
    align=True,
)

# --------------------------------------------------------------------------- ring records
# ``rec_id`` is a per-collector-session counter shared by every record kind, assigned in
# arrival order.  (session_id, rec_id) is the primary key in the database, which makes
# replays idempotent and lets history loading merge snapshots, deltas, trades and gaps
# in exactly the order the feed saw them.  ``market`` is the book slot of the market in
# the live BookSet; the writer maps slots to ``markets.id`` when it encodes COPY rows.
DELTA_DTYPE = np.dtype(
    [
        ("rec_id", np.int64),
        ("exch_ts", np.int64),  # ms
        ("recv_ts", np.int64),  # ns
        ("seq", np.int64),
        ("delta", np.int64),  # signed change, count units
        ("market", np.int32),
        ("sid", np.int32),
        ("price", np.int16),  # ticks, on the scale of ``side`` (NO bids on the NO scale)
        ("side", np.int8),  # SIDE_YES / SIDE_NO
        ("status", np.int8),  # ST_* from applying it to the live book
    ],
    align=True,
)

# One row per level of a snapshot; all rows of one snapshot share rec_id/seq.  An empty
# snapshot (both sides absent) is one marker row with side=SIDE_NONE, price=NO_PRICE, qty=0.
SNAPSHOT_LEVEL_DTYPE = np.dtype(
    [
        ("rec_id", np.int64),
        ("exch_ts", np.int64),
        ("recv_ts", np.int64),
        ("seq", np.int64),
        ("qty", np.int64),  # count units (> 0)
        ("market", np.int32),
        ("sid", np.int32),
        ("price", np.int16),
        ("side", np.int8),
        ("status", np.int8),
    ],
    align=True,
)

TRADE_DTYPE = np.dtype(
    [
        ("rec_id", np.int64),
        ("exch_ts", np.int64),
        ("recv_ts", np.int64),
        ("count", np.int64),  # count units
        ("trade_id_hi", np.uint64),  # Kalshi trade_id UUID, big-endian halves
        ("trade_id_lo", np.uint64),
        ("market", np.int32),
        ("sid", np.int32),
        ("seq", np.int64),  # NO_SEQ: trade messages carry no seq
        ("yes_price", np.int16),  # ticks, YES scale
        ("taker_side", np.int8),  # TAKER_YES / TAKER_NO
    ],
    align=True,
)

# A sequence gap, disconnect or desync that invalidated a book.  One row per affected market.
GAP_REASON_SEQ = 1  # seq jumped on the sid
GAP_REASON_DISCONNECT = 2  # socket lost
GAP_REASON_DESYNC = 3  # negative level / crossed book
GAP_REASON_SUB_ERROR = 4  # server error 10/17/25 on a live sid
GAP_DTYPE = np.dtype(
    [
        ("rec_id", np.int64),
        ("recv_ts", np.int64),
        ("expected_seq", np.int64),
        ("got_seq", np.int64),
        ("market", np.int32),
        ("sid", np.int32),
        ("reason", np.int8),
    ],
    align=True,
)

# --------------------------------------------------------------------------- trading
# Actions of the discrete action space (env and actor share them).
ACT_HOLD = 0
ACT_BUY_YES = 1
ACT_SELL_YES = 2
ACT_BUY_NO = 3
ACT_SELL_NO = 4
N_ACTIONS = 5

ORDER_BUY = 0
ORDER_SELL = 1

TIF_IOC = 0  # immediate_or_cancel
TIF_GTC = 1  # good_till_canceled
TIF_FOK = 2  # fill_or_kill

ORD_RESTING = 0
ORD_CANCELED = 1
ORD_EXECUTED = 2
ORD_PENDING = 3  # sent, not yet at the exchange (entry latency)
ORD_REJECTED = 4  # refused; ``reject`` says why (REJ_*)

# Why an order or action is refused (core.orders).  Kernels return these; Python maps them to
# Kalshi's error objects (kalshi_rl.trade) or to masks and counters (kalshi_rl.env).
REJ_NONE = 0
REJ_INSUFFICIENT_BALANCE = 1  # cash does not cover cost plus fees
REJ_REDUCE_ONLY = 2  # reduce_only, but the order would not reduce the position
REJ_POST_ONLY_CROSS = 3  # post_only, but the order would take liquidity
REJ_BAD_PRICE = 4  # price off the market's tick grid or outside (0, PRICE_MAX)
REJ_BAD_COUNT = 5  # count <= 0 or off the count grid
REJ_MARKET_CLOSED = 6  # market not open for trading
REJ_NO_LIQUIDITY = 7  # a taker order with nothing to take within its limit
REJ_POSITION_LIMIT = 8  # the order would exceed the configured max |position|
REJ_IN_FLIGHT = 9  # an earlier order is still unacknowledged (latency)
REJ_NOTHING_HELD = 10  # a sell of a side not held where sells are reduce-only (env)
REJ_BAD_ACTION = 11  # an ACT_* code out of range
REJECT_NAMES = {
    REJ_NONE: "ok",
    REJ_INSUFFICIENT_BALANCE: "insufficient_balance",
    REJ_REDUCE_ONLY: "reduce_only_violated",
    REJ_POST_ONLY_CROSS: "post_only_cross",
    REJ_BAD_PRICE: "invalid_price",
    REJ_BAD_COUNT: "invalid_count",
    REJ_MARKET_CLOSED: "market_closed",
    REJ_NO_LIQUIDITY: "no_liquidity",
    REJ_POSITION_LIMIT: "position_limit",
    REJ_IN_FLIGHT: "order_in_flight",
    REJ_NOTHING_HELD: "nothing_held",
    REJ_BAD_ACTION: "bad_action",
}

# Account state of one agent in one market.  ``position`` is signed: +YES / -NO contracts
# (count units), as Kalshi's ``position_fp``.  ``cost_basis`` is the money paid for the
# open position (on its own side's price scale); avg cost = cost_basis / |position|.
# Invariant (core.account): cash - start_cash == realized_pnl - cost_basis.
POSITION_DTYPE = np.dtype(
    [
        ("position", np.int64),  # count units, +YES / -NO
        ("cost_basis", np.int64),  # money
        ("cash", np.int64),  # money (never negative under the engine's collateral rule)
        ("realized_pnl", np.int64),  # money, net of fees, settlement included
        ("fees_paid", np.int64),  # money: trade fees + rounding fees - rebates
        ("n_trades", np.int64),  # fills booked
        ("volume", np.int64),  # count units traded
        ("settlement_pnl", np.int64),  # money: payouts - cost basis of settled contracts
    ],
    align=True,
)

# One order (env scratch order or a paper order).  Prices are on ``side``'s scale.  A buy of
# side s at p rests on ladder s at p; a sell of side s at p rests on the other ladder at
# PRICE_MAX - p (core.queue).  Latency timestamps are exchange-clock ms (NO_TS = unset).
ORDER_DTYPE = np.dtype(
    [
        ("order_id", np.int64),
        ("ts", np.int64),  # ms: created (sent) by the client
        ("count", np.int64),  # initial count units
        ("remaining", np.int64),
        ("filled", np.int64),
        ("notional", np.int64),  # sum of fill count * price (side's scale) so far
        ("fees", np.int64),  # money, net fees of the fills so far (trade + rounding - rebate)
        ("taker_fees", np.int64),  # money, trade fees of taker fills
        ("maker_fees", np.int64),  # money, trade fees of maker fills
        ("rounding_acc", np.int64),  # notional units (1e-5 $): Kalshi's per-order accumulator
        ("queue_ahead", np.int64),  # count units estimated ahead of us at our level
        ("level_qty", np.int64),  # others' quantity at our level when last seen
        ("trade_since", np.int64),  # traded at our level since the last level update
        ("active_ts", np.int64),  # ms: reaches the exchange (ts + entry latency)
        ("ack_ts", np.int64),  # ms: the client learns the outcome (active_ts + ack latency)
        ("market", np.int32),
        ("price", np.int16),  # ticks on ``side``'s scale (limit)
        ("side", np.int8),  # SIDE_YES / SIDE_NO (the outcome bought/sold)
        ("action", np.int8),  # ORDER_BUY / ORDER_SELL
        ("tif", np.int8),  # TIF_*
        ("status", np.int8),  # ORD_*
        ("post_only", np.uint8),
        ("reduce_only", np.uint8),
        ("reject", np.int8),  # REJ_* when status == ORD_REJECTED
    ],
    align=True,
)

# One fill of one order.  ``cash`` is the exact balance change (Kalshi's floored
# balance_change plus any rebate); ``fee`` = trade_fee + rounding - rebate (money, signed on a
# rebate fill, never negative summed over an order).
FILL_DTYPE = np.dtype(
    [
        ("order_id", np.int64),
        ("ts", np.int64),  # ms
        ("count", np.int64),
        ("fee", np.int64),  # money, net fee of this fill (see above)
        ("trade_fee", np.int64),  # money, fee model value rounded up to $0.0001
        ("rounding_fee", np.int64),  # notional units (1e-5 $)
        ("rebate", np.int64),  # money, whole cents
        ("cash", np.int64),  # money, balance change
        ("market", np.int32),
        ("price", np.int16),  # ticks on ``side``'s scale
        ("side", np.int8),
        ("action", np.int8),
        ("is_taker", np.uint8),
    ],
    align=True,
)

ACTION_DTYPE = np.dtype(
    [
        ("ts", np.int64),  # ns
        ("step", np.int64),
        ("count", np.int64),
        ("account_value", np.int64),  # money, after the action
        ("position", np.int64),
        ("market", np.int32),
        ("action", np.int8),  # ACT_*
        ("price", np.int16),  # limit/fill price, ticks, NO_PRICE for hold
    ],
    align=True,
)

# --------------------------------------------------------------------------- fees
# Kalshi: trade fee = round_up(rate * C * P * (1 - P)) dollars.  As an exact integer ratio:
TAKER_FEE_NUM, TAKER_FEE_DEN = 7, 100  # 0.07
MAKER_FEE_NUM, MAKER_FEE_DEN = 7, 400  # 0.0175
FEE_ROUND_CURRENT = 1  # round the trade fee up to $0.0001 (current Kalshi rule)
FEE_ROUND_CENT = 100  # classic rule: round up to the next cent per order
# exact fee money = num * count * p * (1000 - p) / (den * FEE_DIVISOR)  (core.fees)
FEE_DIVISOR = COUNT_SCALE * PRICE_MAX * PRICE_MAX // MONEY_SCALE  # == 10_000
# Balance precision of a member (kalshi-protocol.md section 4), in money units: every fill's
# balance change is floored to it; the difference is the rounding fee.
MEMBER_CENT = 100  # non-direct members: $0.01 (the default, the conservative choice)
MEMBER_DIRECT = 1  # direct members: $0.0001
# A notional unit is count unit x tick = $0.00001; money = notional / NOTIONAL_DIVISOR.
REBATE_NOTIONAL = PAIR_MONEY_PER_COUNT * NOTIONAL_DIVISOR  # $0.01 in notional units (1000)

# The fee schedule of one market (one record, built once by the caller; core.fees).
FEE_DTYPE = np.dtype(
    [
        ("taker_num", np.int64),
        ("taker_den", np.int64),
        ("maker_num", np.int64),  # 0 where the series charges makers nothing
        ("maker_den", np.int64),
        ("precision", np.int64),  # member balance precision, money (MEMBER_CENT / MEMBER_DIRECT)
        ("taker_bound", np.int64),  # core.fees.fee_bound of the taker rate (fast checks)
        ("maker_bound", np.int64),  # ... of the maker rate
    ],
    align=True,
)

# --------------------------------------------------------------------------- valuation
MARK_LIQUIDATION = 0  # value = what the position could be sold for now (walk the bids)
MARK_MID = 1  # value at the two-sided mid; liquidation value when the book is not two-sided

# --------------------------------------------------------------------------- queue models
# How a resting order's place in its level's queue evolves (core.queue).  Chosen once per
# paper client / env, stored in a QUEUE_MODEL_DTYPE record; never a string inside a kernel.
QUEUE_CONSERVATIVE = 0  # the queue ahead shrinks only by trades at our price
QUEUE_PROB_POWER = 1  # level decreases split ahead/behind with f(x) = x ** power
QUEUE_PROB_LOG = 2  # ... with f(x) = log(1 + x)
QUEUE_FIFO_EXACT = 3  # the exchange tells the position (queue_set_ahead); trades only
QUEUE_MODEL_DTYPE = np.dtype(
    [
        ("kind", np.int64),  # QUEUE_*
        ("power", np.float64),  # exponent of QUEUE_PROB_POWER
    ],
    align=True,
)

# --------------------------------------------------------------------------- latency
# Order-entry and acknowledgement delays, uniform in [min, max] ms (min == max: constant).
LATENCY_DTYPE = np.dtype(
    [
        ("entry_min_ms", np.int64),
        ("entry_max_ms", np.int64),
        ("ack_min_ms", np.int64),
        ("ack_max_ms", np.int64),
    ],
    align=True,
)

# --------------------------------------------------------------------------- liquidity
# Consumed liquidity of one account in one market (core.liquidity): per book side, up to
# CONSUMED_CAP prices with what our orders took there that the book still shows.
CONSUMED_CAP = 32
LIQUIDITY_DTYPE = np.dtype(
    [
        ("n", np.int64, (2,)),  # entries in use per side
        ("px", np.int16, (2, CONSUMED_CAP)),  # price on the side's own scale
        ("qty", np.int64, (2, CONSUMED_CAP)),  # count units taken there, not yet used up
        ("seen", np.int64, (2, CONSUMED_CAP)),  # the level's quantity when last seen
    ],
    align=True,
)

# --------------------------------------------------------------------------- defaults
DEFAULT_TOP_K = 10  # depth levels per side kept for fills in datasets
FEATURE_TOP_LEVELS = 5  # depth levels per side used in observations
HIST_LEN = 32  # rolling window of mids (decision points) kept for features
DEFAULT_BOOK_CAPACITY = 256  # market slots of a BookSet when the caller does not say

# --------------------------------------------------------------------------- features
# Normalisation scales of the observation features (module table of core.features and
# docs/features.md).  Feature names, counts and indices stay in core.features: they are
# derived from its feature table.
DEPTH_LOG_SCALE = 10.0  # log1p(contracts) / 10: 22k contracts -> 1.0
RET_SCALE_TICKS = 100.0  # mid changes in $0.10 units
VOL_SCALE_TICKS = 10.0  # std of one-step mid changes in $0.01 units
POS_LOG_SCALE = 5.0  # sign * log1p(contracts) / 5: 100 contracts -> 0.92
RET_LAGS = (1, 5, 20)  # decision points back of the ret_1 / ret_5 / ret_20 features
NO_MID = float("nan")  # mid of a book that is not two-sided: there is none (never 500)

# --------------------------------------------------------------------------- datasets
# layout version written into stored datasets; readers check it.  v2: honest mids (NaN
# unless the book is two-sided) and the two_sided feature.
DATASET_VERSION = 2

# --------------------------------------------------------------------------- binary COPY
# PostgreSQL binary COPY framing: core.ring encodes it, kalshi_rl.store.history decodes it.
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"  # first 11 bytes of every stream
# signature, int32 flags, int32 header-extension length (ours: no flags, no extension)
COPY_HEADER = COPY_SIGNATURE + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"  # int16 field count -1 ends the stream
COPY_NULL_LENGTH = -1  # int32 length of a NULL value (no value bytes follow)

# Columns of the recorded-feed tables in sql/001_init.sql order, as (column, bytes of its
# binary value).  A row is an int16 field count, then per column an int32 length and the
# big-endian value.
DELTA_COPY_COLUMNS = (
    ("session_id", 8), ("rec_id", 8), ("market_id", 4), ("sid", 4), ("seq", 8), ("side", 2),
    ("price", 2), ("delta", 8), ("exch_ts", 8), ("recv_ts", 8), ("status", 2),
)  # fmt: skip
SNAPSHOT_COPY_COLUMNS = (
    ("session_id", 8), ("rec_id", 8), ("market_id", 4), ("sid", 4), ("seq", 8), ("side", 2),
    ("price", 2), ("qty", 8), ("exch_ts", 8), ("recv_ts", 8),
)  # fmt: skip
TRADE_COPY_COLUMNS = (  # trade_id is a uuid, NULL when the feed gave none
    ("session_id", 8), ("rec_id", 8), ("market_id", 4), ("trade_id", 16), ("sid", 4),
    ("yes_price", 2), ("count", 8), ("taker_side", 2), ("exch_ts", 8), ("recv_ts", 8),
)  # fmt: skip
GAP_COPY_COLUMNS = (
    ("session_id", 8), ("rec_id", 8), ("market_id", 4), ("sid", 4), ("expected_seq", 8),
    ("got_seq", 8), ("reason", 2), ("recv_ts", 8),
)  # fmt: skip

# --------------------------------------------------------------------------- ring control
# Slots of a ring's int64 control array (core.ring).  head/tail are monotonically growing
# counters (index = counter & (capacity - 1)); the producer writes only HEAD, HWM,
# OVERFLOW and PUSHED, the consumer only TAIL and DRAINED.
RING_HEAD = 0
RING_TAIL = 1
RING_HWM = 2  # highest occupancy seen
RING_OVERFLOW = 3  # records the ring refused because it was full (cumulative)
RING_PUSHED = 4  # records accepted (cumulative)
RING_DRAINED = 5  # records handed to the consumer (cumulative)
RING_CTL_LEN = 8  # padded so producer/consumer slots can be split later without a relayout

# --------------------------------------------------------------------------- env (RL)
# Per-env state of the vectorised trading env (kalshi_rl.env.kernels), one record per env.
ENV_STATE_DTYPE = np.dtype(
    [
        ("seg", np.int64),  # segment index of the running episode
        ("t", np.int64),  # current row (decision point) in the dataset
        ("steps", np.int64),  # steps taken in this episode
        ("rng", np.uint64),  # xorshift64* state (seeded from the env's np_random)
        ("ep_return", np.float64),  # sum of rewards in this episode
        ("n_invalid", np.int64),  # masked actions chosen in this episode (run as hold)
        ("value", np.int64),  # money: account value at the current row (reward baseline)
        ("busy_until", np.int64),  # ms: no new order before this (in flight / not acked)
        ("n_unfilled", np.int64),  # orders sent in this episode that filled nothing
    ],
    align=True,
)

# Summary of a finished episode, written by the step kernel at the step that ends it.
# pnl == trading + settlement + mark - fees exactly (money).
EPISODE_DTYPE = np.dtype(
    [
        ("ret", np.float64),  # sum of rewards
        ("length", np.int64),  # steps
        ("pnl", np.int64),  # money: final account value - start cash (net of fees)
        ("fees", np.int64),  # money, net fees paid
        ("trades", np.int64),  # fills
        ("n_invalid", np.int64),
        ("seg", np.int64),
        ("settled", np.int8),  # 1 if the segment's result was known and paid out
        ("trading", np.int64),  # money: realized P&L of closing trades, before fees
        ("settlement", np.int64),  # money: payouts - cost basis of the settled contracts
        ("mark", np.int64),  # money: end value of the open position - its cost basis
        ("n_unfilled", np.int64),  # orders sent that filled nothing (liquidity gone, cash)
    ],
    align=True,
)

# --------------------------------------------------------------------------- market results
# How a market resolved: sim markets, lifecycle events and dataset segments share the codes.
RESULT_UNKNOWN = -1  # not determined (yet), or not in the data
RESULT_NO = 0
RESULT_YES = 1

# --------------------------------------------------------------------------- sim (local exchange)
# One generated exchange event of kalshi_rl.sim (model or replay), in stream order.
#   EV_DELTA:     side, price (side's own scale), qty = signed change (count units)
#   EV_TRADE:     side = taker side, price = YES price, qty = count
#   EV_SNAPSHOT:  one row per level like SNAPSHOT_LEVEL_DTYPE rows (side SIDE_NONE = empty);
#                 rows of one snapshot share ``group``
#   EV_LIFECYCLE: side = LC_* event type, price = result (RESULT_*) when determined
SIM_EVENT_DTYPE = np.dtype(
    [
        ("ts", np.int64),  # exchange ms
        ("qty", np.int64),
        ("group", np.int64),  # snapshot id (EV_SNAPSHOT), else the generating step
        ("market", np.int32),  # index into the sim's market list
        ("price", np.int16),
        ("kind", np.int8),  # EV_*
        ("side", np.int8),
    ],
    align=True,
)

# market_lifecycle_v2 event types (sim and recorder share the codes)
LC_CREATED = 1
LC_ACTIVATED = 2
LC_DEACTIVATED = 3
LC_CLOSE_DATE_UPDATED = 4
LC_DETERMINED = 5
LC_SETTLED = 6
LC_CLOSED = 7  # close_time reached: no WS event of its own, REST status becomes "closed"

# --------------------------------------------------------------------------- book (core.book)
ST_BAD_BEST = 8  # book_check: the cached best price disagrees with the ladder
STATUS_NAMES[ST_BAD_BEST] = "bad_best_cache"

# Per-market state of the sim's market model (kalshi_rl.sim.model).
MS_OPEN = 0
MS_CLOSED = 1
MS_DETERMINED = 2
MS_SETTLED = 3
SIM_MARKET_DTYPE = np.dtype(
    [
        ("logit", np.float64),  # latent log-odds of YES
        ("close_u", np.float64),  # uniform draw deciding the result at close (u < p => yes)
        ("close_ts", np.int64),  # ms
        ("determine_ts", np.int64),
        ("settle_ts", np.int64),
        ("volume", np.int64),  # count units traded
        ("grid_len", np.int32),  # valid prices in this market's grid row
        ("last_price", np.int16),  # last trade YES price (NO_PRICE before the first)
        ("status", np.int8),  # MS_*
        ("result", np.int8),  # RESULT_*
    ],
    align=True,
)

# Rolling listings (kalshi_rl.sim.listings): a listed market waits for its open time; a
# settled market's slot is freed for the next listing of any series.
# The planted mispricing of the sim (kalshi_rl.sim.model.quote_logit; docs/sim.md): per
# unit of a series' bias knob, fair log-odds l < 0 are quoted at l * (1 - LONGSHOT * b),
# l > 0 at l * (1 + FAVORITE * b).  b = 1 is calibrated to Kalshi's published figures; the
# default sim plants SIM_DEFAULT_BIAS.  Shared here so rules that know the bias
# (kalshi_rl.train.baselines.BiasAwarePolicy) need not import the sim.
SIM_BIAS_LONGSHOT = 0.058
SIM_BIAS_FAVORITE = 0.2
SIM_DEFAULT_BIAS = 3.0
MS_INITIALIZED = 4  # created (REST "initialized"), opens at open_ts
MS_FREE = 5  # slot holds no market
# Latent state of each sim market slot (kalshi_rl.sim.model): what the market "knows".
SIM_LATENT_DTYPE = np.dtype(
    [
        ("x", np.float64),  # latent score; YES iff x > 0 at close (Brownian, lifetime units)
        ("sigma", np.float64),  # std of x per sqrt(ms) (1/sqrt(lifetime)); 0 = logit walk
        ("true_logit", np.float64),  # log-odds of YES given x and the time left
        ("bias", np.float64),  # planted mispricing knob of the market's series (0 = efficient)
        ("open_ts", np.int64),  # ms; MS_INITIALIZED -> MS_OPEN at this time
        ("last_ts", np.int64),  # ms of the last update of x
        ("series", np.int32),  # index of the market's series (-1: a fixed market)
    ],
    align=True,
)

# --------------------------------------------------------------------------- feed (kalshi.feed)
GAP_REASON_UNSUBSCRIBED = 5  # the market was removed from the feed; its book is stale
# The recording ended here (a clean collector stop): not a hole in the data.  One row per
# market, written before the socket closes; history ends segments "recording ended".
GAP_REASON_END = 6

# --------------------------------------------------------------------------- dataset segments
# Why a segment of a core.dataset.Dataset ended (``seg_end_reason``).  A hole (GAP, DESYNC)
# is not an end: the market's data goes on after it.
SEG_END_DATA = 0  # the loaded data ends (window end, end of the data, a new feed session)
SEG_END_GAP = 1  # a feed_gaps row: the data has a hole
SEG_END_DESYNC = 2  # the book became inconsistent: a hole
SEG_END_CLOSE = 3  # the market reached its close_time
SEG_END_RECORDING = 4  # the recording ended (the collector's end marker, GAP_REASON_END)

# --------------------------------------------------------------------------- paper client
# kalshi_rl.trade.paper keeps its account in core arrays: orders are ORDER_DTYPE (the
# engine's record, moved by core.matching / core.queue) plus one PAPER_ORDER_EXTRA_DTYPE row
# per order for what only a Kalshi-shaped client needs; core.paper_book's kernels move both.
STP_TAKER_AT_CROSS = 0  # self_trade_prevention_type taker_at_cross
STP_MAKER = 1  # self_trade_prevention_type maker

# paper order events (why a row of paper_orders was written)
POE_CREATED = 1
POE_FILLED = 2  # a fill changed filled/remaining
POE_AMENDED = 3
POE_DECREASED = 4
POE_CANCELED = 5

COID_MAX = 64  # bytes of a client_order_id kept in order records

PAPER_ORDER_EXTRA_DTYPE = np.dtype(
    [
        ("group", np.int64),  # order-group index, -1 none
        ("created_ns", np.int64),  # wall clock, ns
        ("updated_ns", np.int64),
        ("reserve", np.int64),  # money of collateral held for the remaining count
        ("taker_cost", np.int64),  # money, contracts bought/sold as taker (count * price)
        ("maker_cost", np.int64),
        ("stp", np.int8),  # STP_*
        ("cancel_on_pause", np.uint8),
    ],
    align=True,
)

# One fill of a paper order: the ring record and the paper_fills row (the engine's
# FILL_DTYPE fields plus rec_id; ts is wall-clock ns).
PAPER_FILL_DTYPE = np.dtype(
    [
        ("rec_id", np.int64),
        ("ts", np.int64),  # ns
        ("order_id", np.int64),
        ("count", np.int64),
        ("fee", np.int64),  # money, net fee of the fill (trade + rounding - rebate)
        ("trade_fee", np.int64),  # money
        ("rounding_fee", np.int64),  # notional units (1e-5 $)
        ("rebate", np.int64),  # money
        ("cash", np.int64),  # money, the exact balance change (what a rebuild replays)
        ("market", np.int32),
        ("price", np.int16),  # ticks on ``side``'s scale
        ("side", np.int8),
        ("action", np.int8),
        ("is_taker", np.uint8),
    ],
    align=True,
)

# One state change of a paper order: the ring record and the paper_orders row (append-only;
# the order's current state is its row with the highest rec_id).
PAPER_ORDER_EVENT_DTYPE = np.dtype(
    [
        ("rec_id", np.int64),
        ("ts", np.int64),  # ns
        ("order_id", np.int64),
        ("group", np.int64),
        ("count", np.int64),
        ("remaining", np.int64),
        ("filled", np.int64),
        ("notional", np.int64),
        ("fees", np.int64),  # money, net fees
        ("taker_fees", np.int64),
        ("maker_fees", np.int64),
        ("rounding_acc", np.int64),
        ("market", np.int32),
        ("price", np.int16),
        ("side", np.int8),
        ("action", np.int8),
        ("tif", np.int8),
        ("status", np.int8),
        ("event", np.int8),  # POE_*
        ("flags", np.int8),  # bit 0 post_only, 1 reduce_only, 2 stp maker, 3 cancel on pause
        ("coid_len", np.uint8),
        ("coid", np.uint8, (COID_MAX,)),  # client_order_id, ASCII
    ],
    align=True,
)

# A market determined while the account held a position in it.
PAPER_SETTLEMENT_DTYPE = np.dtype(
    [
        ("rec_id", np.int64),
        ("ts", np.int64),  # ns
        ("position", np.int64),  # count units before settlement, +YES / -NO
        ("cost_basis", np.int64),  # money paid for it
        ("payout", np.int64),  # money credited
        ("market", np.int32),
        ("result", np.int8),  # RESULT_*
    ],
    align=True,
)

# COPY layouts of the paper tables (sql/003_paper.sql); text columns give their max bytes.
PAPER_FILL_COPY_COLUMNS = (
    ("account_id", 8), ("rec_id", 8), ("market_id", 4), ("order_id", 8), ("side", 2),
    ("action", 2), ("price", 2), ("count", 8), ("fee", 8), ("trade_fee", 8),
    ("rounding_fee", 8), ("rebate", 8), ("cash", 8), ("is_taker", 1), ("ts", 8),
)  # fmt: skip
PAPER_ORDER_COPY_COLUMNS = (
    ("account_id", 8), ("rec_id", 8), ("market_id", 4), ("order_id", 8),
    ("client_order_id", COID_MAX), ("order_group", 8), ("event", 2), ("side", 2),
    ("action", 2), ("price", 2), ("count", 8), ("filled", 8), ("remaining", 8), ("tif", 2),
    ("status", 2), ("flags", 2), ("notional", 8), ("fees", 8), ("taker_fees", 8),
    ("maker_fees", 8), ("rounding_acc", 8), ("ts", 8),
)  # fmt: skip
PAPER_SETTLEMENT_COPY_COLUMNS = (
    ("account_id", 8), ("rec_id", 8), ("market_id", 4), ("result", 2), ("position", 8),
    ("cost_basis", 8), ("payout", 8), ("ts", 8),
)  # fmt: skip

# --------------------------------------------------------------------------- policy (core.policy)
# Hidden-layer activations of an exported MLP policy.
POLICY_ACT_TANH = 0
POLICY_ACT_RELU = 1
POLICY_OK = 0
POLICY_BAD_OBS = -1  # a non-finite observation value: nothing is decided
# Version of the observation kernel (core.features). Bump on any change of what a feature
# means or how it is computed: a model trained under another version is refused live.
# 2: honest mids (no made-up mid), two_sided, liquidation-valued account features.
FEATURE_KERNEL_VERSION = 2

# --------------------------------------------------------------------------- actor (trade.actor)
ACTION_PROBS_MAX = 16  # action probabilities kept per record (sum of the action dims)
# What became of one decision (DECISION_DTYPE.status).
AS_HOLD = 0  # the policy held (or the action mapped to no order)
AS_SENT = 1  # an order went to the paper client (see filled / reject)
AS_MASKED = 2  # the action was not valid here (env rule): held instead
AS_RISK = 3  # the risk gate refused the order (see risk)
AS_REJECTED = 4  # the paper client rejected the order (see reject)
AS_SHADOW = 5  # a shadow candidate's decision (never sent)
ACTION_STATUS_NAMES = ("hold", "sent", "masked", "risk", "rejected", "shadow")
# One actor decision: pushed to the action ring, written to trading_actions.
DECISION_DTYPE = np.dtype(
    [
        ("episode_id", np.int64),
        ("step", np.int64),  # per episode, from 1
        ("ts", np.int64),  # ns, decision time (local)
        ("exch_ts", np.int64),  # ms, exchange time of the book decided on
        ("latency_ns", np.int64),  # book update received -> order answered
        ("obs_hash", np.int64),  # 64-bit hash of the observation bytes
        ("count", np.int64),  # order count sent (count units)
        ("filled", np.int64),
        ("fee", np.int64),  # money
        ("position", np.int64),  # market position after the decision (count units)
        ("cash", np.int64),  # the market's sub-account cash after (money)
        ("value", np.int64),  # the market's mark-to-market value after (money)
        ("probs", np.float32, (ACTION_PROBS_MAX,)),
        ("market", np.int32),  # book slot
        ("model_version", np.int32),
        ("action", np.int16),  # ACT_*
        ("slip_idx", np.int16),  # MULTI: index into slippage_choices (else -1)
        ("size_idx", np.int16),  # MULTI: index into size_choices (else -1)
        ("price", np.int16),  # limit on the side's scale (NO_PRICE none)
        ("reject", np.int16),  # the engine's/paper client's REJ_* code
        ("risk", np.int8),  # trade.risk.RiskReason
        ("side", np.int8),
        ("order_action", np.int8),
        ("status", np.int8),  # AS_*
        ("n_probs", np.int8),
    ],
    align=True,
)
