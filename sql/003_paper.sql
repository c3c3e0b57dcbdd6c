-- Paper trading accounts (kalshi_rl.trade.paper), version 3.
-- The paper_orders / paper_fills tables of 001 were never written; they are replaced by
-- append-only logs keyed like the recorded-feed tables: (account_id, rec_id), with one
-- rec_id counter per account shared by orders, fills and settlements (the replay order).
-- The writer COPYs them from rings (kalshi_rl.store.writer); the account is rebuilt by
-- replaying fills and settlements in rec_id order through core.paper_book.
-- Like the recorded-feed tables they carry no foreign keys (COPY speed; the writer
-- upserts markets, the account row exists before any batch).
-- Units: price ticks of $0.001 on the side's scale, count hundredths, money $0.0001, ts ns.

DROP TABLE IF EXISTS paper_fills;
DROP TABLE IF EXISTS paper_orders;

CREATE TABLE paper_accounts (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    start_cash      bigint NOT NULL,           -- money
    config          jsonb NOT NULL DEFAULT '{}',  -- fill/queue/latency models, fee precision
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz
);

-- One row per state change of an order (created, filled, amended, decreased, canceled);
-- the order's current state is its row with the highest rec_id.
CREATE TABLE paper_orders (
    account_id      bigint   NOT NULL,
    rec_id          bigint   NOT NULL,
    market_id       integer  NOT NULL,
    order_id        bigint   NOT NULL,   -- per-account sequence (the API shows it as a UUID)
    client_order_id text     NOT NULL,
    order_group     bigint   NOT NULL,   -- -1 none
    event           smallint NOT NULL,   -- core.dtypes POE_*
    side            smallint NOT NULL,   -- 0 yes, 1 no
    action          smallint NOT NULL,   -- 0 buy, 1 sell
    price           smallint NOT NULL,
    count           bigint   NOT NULL,
    filled          bigint   NOT NULL,
    remaining       bigint   NOT NULL,
    tif             smallint NOT NULL,   -- core.dtypes TIF_*
    status          smallint NOT NULL,   -- core.dtypes ORD_*
    flags           smallint NOT NULL,   -- bit 0 post_only, 1 reduce_only, 2 stp maker, 3 cancel on pause
    notional        bigint   NOT NULL,   -- sum count * price of its fills
    fees            bigint   NOT NULL,   -- money, net: trade + rounding - rebates
    taker_fees      bigint   NOT NULL,   -- money, trade fees of taker fills
    maker_fees      bigint   NOT NULL,
    rounding_acc    bigint   NOT NULL,   -- Kalshi's per-order rounding accumulator (1e-5 $)
    ts              bigint   NOT NULL,
    PRIMARY KEY (account_id, rec_id)
);
CREATE INDEX paper_orders_order ON paper_orders (account_id, order_id, rec_id);

CREATE TABLE paper_fills (
    account_id  bigint   NOT NULL,
    rec_id      bigint   NOT NULL,
    market_id   integer  NOT NULL,
    order_id    bigint   NOT NULL,
    side        smallint NOT NULL,
    action      smallint NOT NULL,
    price       smallint NOT NULL,
    count       bigint   NOT NULL,
    fee         bigint   NOT NULL,   -- money, net fee: trade_fee + rounding - rebate
    trade_fee   bigint   NOT NULL,   -- money, rounded up to $0.0001
    rounding_fee bigint  NOT NULL,   -- 1e-5 $ (notional units)
    rebate      bigint   NOT NULL,   -- money, whole cents
    cash        bigint   NOT NULL,   -- money, the exact balance change (replayed on rebuild)
    is_taker    boolean  NOT NULL,
    ts          bigint   NOT NULL,
    PRIMARY KEY (account_id, rec_id)
);

CREATE TABLE paper_settlements (
    account_id  bigint   NOT NULL,
    rec_id      bigint   NOT NULL,
    market_id   integer  NOT NULL,
    result      smallint NOT NULL,   -- core.dtypes RESULT_*
    position    bigint   NOT NULL,   -- count units held before, +YES / -NO
    cost_basis  bigint   NOT NULL,
    payout      bigint   NOT NULL,
    ts          bigint   NOT NULL,
    PRIMARY KEY (account_id, rec_id)
);
