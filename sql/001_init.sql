-- kalshi-rl schema, version 1.
-- Units: price = integer ticks of $0.001 (YES scale unless the column says no_),
-- count = integer hundredths of a contract, money = integer units of $0.0001,
-- exch_ts = exchange unix ms, recv_ts = local unix ns.

CREATE TABLE markets (
    id              serial PRIMARY KEY,
    ticker          text NOT NULL UNIQUE,
    event_ticker    text,
    series_ticker   text,
    title           text,
    status          text,
    open_time       timestamptz,
    close_time      timestamptz,
    result          text,             -- 'yes' | 'no' | 'scalar' | NULL while unknown
    settlement_value integer,         -- ticks (YES scale) when determined
    price_level_structure text,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE feed_sessions (
    id              bigserial PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT now(),
    ended_at        timestamptz,
    source          text NOT NULL,    -- ws url
    mode            text NOT NULL,    -- live | demo | sim | replay
    markets         text[] NOT NULL DEFAULT '{}',
    n_messages      bigint NOT NULL DEFAULT 0,
    n_deltas        bigint NOT NULL DEFAULT 0,
    n_snapshots     bigint NOT NULL DEFAULT 0,
    n_trades        bigint NOT NULL DEFAULT 0,
    n_gaps          bigint NOT NULL DEFAULT 0,
    n_decode_errors bigint NOT NULL DEFAULT 0,
    n_reconnects    bigint NOT NULL DEFAULT 0,
    host            text,
    version         text
);

-- The four recorded-feed tables below carry no FOREIGN KEY constraints on purpose: RI
-- triggers fire per row and cut COPY ingest ~5x (measured 145k -> 806k rows/s). The writer
-- guarantees the references: it upserts markets (ensure_markets) and the feed_sessions row
-- exists before any batch is encoded.

-- One row per level of a snapshot (all rows of one snapshot share rec_id); an empty
-- snapshot is one marker row with side = -1, price = -1, qty = 0.
CREATE TABLE orderbook_snapshots (
    session_id  bigint   NOT NULL,
    rec_id      bigint   NOT NULL,
    market_id   integer  NOT NULL,
    sid         integer  NOT NULL,
    seq         bigint   NOT NULL,
    side        smallint NOT NULL,   -- 0 yes, 1 no, -1 empty-snapshot marker
    price       smallint NOT NULL,   -- ticks on the side's own scale (no bids on NO scale)
    qty         bigint   NOT NULL,   -- count units
    exch_ts     bigint   NOT NULL,
    recv_ts     bigint   NOT NULL,
    PRIMARY KEY (session_id, rec_id, side, price)
);

CREATE TABLE orderbook_deltas (
    session_id  bigint   NOT NULL,
    rec_id      bigint   NOT NULL,
    market_id   integer  NOT NULL,
    sid         integer  NOT NULL,
    seq         bigint   NOT NULL,
    side        smallint NOT NULL,
    price       smallint NOT NULL,
    delta       bigint   NOT NULL,   -- signed change, count units
    exch_ts     bigint   NOT NULL,
    recv_ts     bigint   NOT NULL,
    status      smallint NOT NULL DEFAULT 0, -- core.dtypes ST_* from the live book
    PRIMARY KEY (session_id, rec_id)
);
-- history loading: a time window of one market, in arrival order
-- BRIN, not btree: deltas arrive in time order, and a btree on (market_id, exch_ts) halves
-- COPY ingest (measured: 75k -> 115-140k rows/s on one connection). History loading scans a
-- time window and filters markets, which BRIN serves.
CREATE INDEX orderbook_deltas_ts ON orderbook_deltas USING brin (exch_ts);
CREATE INDEX orderbook_snapshots_market_ts ON orderbook_snapshots (market_id, exch_ts);

CREATE TABLE trades (
    session_id  bigint   NOT NULL,
    rec_id      bigint   NOT NULL,
    market_id   integer  NOT NULL,
    trade_id    uuid,
    sid         integer  NOT NULL,
    yes_price   smallint NOT NULL,
    count       bigint   NOT NULL,
    taker_side  smallint NOT NULL,   -- 0 yes, 1 no
    exch_ts     bigint   NOT NULL,
    recv_ts     bigint   NOT NULL,
    PRIMARY KEY (session_id, rec_id)
);
CREATE INDEX trades_market_ts ON trades (market_id, exch_ts);

CREATE TABLE feed_gaps (
    session_id   bigint   NOT NULL,
    rec_id       bigint   NOT NULL,
    market_id    integer  NOT NULL,
    sid          integer  NOT NULL,
    expected_seq bigint   NOT NULL,
    got_seq      bigint   NOT NULL,
    reason       smallint NOT NULL,  -- core.dtypes GAP_REASON_*
    recv_ts      bigint   NOT NULL,
    PRIMARY KEY (session_id, rec_id, market_id)
);
CREATE INDEX feed_gaps_market ON feed_gaps (market_id, recv_ts);

CREATE TABLE models (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL,
    version         integer NOT NULL,
    algorithm       text NOT NULL,
    markets         text[] NOT NULL DEFAULT '{}',
    parent_id       bigint REFERENCES models(id),
    checkpoint_path text,
    hyperparams     jsonb NOT NULL DEFAULT '{}',
    env_config      jsonb NOT NULL DEFAULT '{}',
    config_hash     text NOT NULL,
    data_window     jsonb NOT NULL DEFAULT '{}',
    metrics         jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'training'
                    CHECK (status IN ('training', 'ready', 'deployed', 'archived', 'failed')),
    git_commit      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);
-- at most one deployed version per model name
CREATE UNIQUE INDEX models_one_deployed ON models (name) WHERE status = 'deployed';

CREATE TABLE training_runs (
    id            bigserial PRIMARY KEY,
    model_id      bigint REFERENCES models(id),
    algorithm     text NOT NULL,
    config        jsonb NOT NULL DEFAULT '{}',
    config_hash   text NOT NULL,
    dataset_path  text,
    total_timesteps bigint NOT NULL,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'finished', 'failed', 'stopped')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    error         text
);

CREATE TABLE training_progress (
    run_id        bigint NOT NULL REFERENCES training_runs(id) ON DELETE CASCADE,
    timesteps     bigint NOT NULL,
    ts            timestamptz NOT NULL DEFAULT now(),
    metrics       jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, timesteps)
);

CREATE TABLE trading_episodes (
    id            bigserial PRIMARY KEY,
    model_id      bigint REFERENCES models(id),
    mode          text NOT NULL DEFAULT 'paper' CHECK (mode = 'paper'),
    markets       text[] NOT NULL DEFAULT '{}',
    started_at    timestamptz NOT NULL DEFAULT now(),
    ended_at      timestamptz,
    start_cash    bigint NOT NULL,   -- money
    end_value     bigint,            -- money
    fees_paid     bigint NOT NULL DEFAULT 0,
    n_actions     bigint NOT NULL DEFAULT 0,
    status        text NOT NULL DEFAULT 'running'
);

CREATE TABLE trading_actions (
    episode_id    bigint NOT NULL REFERENCES trading_episodes(id),
    step          bigint NOT NULL,
    market_id     integer REFERENCES markets(id),
    ts            bigint NOT NULL,   -- ns
    action        smallint NOT NULL, -- core.dtypes ACT_*
    price         smallint,
    count         bigint NOT NULL DEFAULT 0,
    position      bigint NOT NULL DEFAULT 0,
    account_value bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (episode_id, step, market_id)
);

CREATE TABLE paper_orders (
    id              bigserial PRIMARY KEY,
    episode_id      bigint REFERENCES trading_episodes(id),
    market_id       integer REFERENCES markets(id),
    client_order_id text NOT NULL UNIQUE,
    side            smallint NOT NULL,   -- 0 yes, 1 no
    action          smallint NOT NULL,   -- 0 buy, 1 sell
    price           smallint NOT NULL,   -- ticks on side's scale
    count           bigint NOT NULL,
    filled          bigint NOT NULL DEFAULT 0,
    remaining       bigint NOT NULL DEFAULT 0,
    tif             smallint NOT NULL,
    status          text NOT NULL,
    fees            bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE paper_fills (
    id            bigserial PRIMARY KEY,
    order_id      bigint NOT NULL REFERENCES paper_orders(id),
    market_id     integer REFERENCES markets(id),
    side          smallint NOT NULL,
    action        smallint NOT NULL,
    price         smallint NOT NULL,
    count         bigint NOT NULL,
    fee           bigint NOT NULL,
    is_taker      boolean NOT NULL,
    ts            bigint NOT NULL
);
