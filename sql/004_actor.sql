-- The actor (kalshi_rl.trade.actor), version 4.
-- trading_episodes: one row per (actor run, model version); shadow candidates get their own
-- rows (shadow = true) with their would-be P&L.  trading_actions of 001 was never written:
-- it is replaced by the full decision record (core.dtypes ACTION_DTYPE), one row per
-- decision, COPYed by kalshi_rl.trade.records.ActionSink from the actor's ring.
-- Units: price ticks on the side's scale, count hundredths, money $0.0001, ts ns (exch_ts ms).

ALTER TABLE trading_episodes
    ADD COLUMN model_name    text,
    ADD COLUMN model_version integer,
    ADD COLUMN session_id    bigint,            -- feed_sessions.id of the live node
    ADD COLUMN account_id    bigint,            -- paper_accounts.id traded (NULL for shadow)
    ADD COLUMN shadow        boolean NOT NULL DEFAULT false,
    ADD COLUMN config        jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN summary       jsonb NOT NULL DEFAULT '{}';

DROP TABLE IF EXISTS trading_actions;
CREATE TABLE trading_actions (
    episode_id    bigint   NOT NULL,
    step          bigint   NOT NULL,            -- per episode, from 1
    market_id     integer  NOT NULL,
    ts            bigint   NOT NULL,            -- ns, decision time
    exch_ts       bigint   NOT NULL,            -- ms, exchange time of the book decided on
    latency_ns    bigint   NOT NULL,            -- book received -> order answered
    obs_hash      bigint   NOT NULL,            -- FNV-1a of the observation bytes
    model_version integer  NOT NULL,
    action        smallint NOT NULL,            -- core.dtypes ACT_*
    slip_idx      smallint NOT NULL,            -- MULTI action dims (-1 otherwise)
    size_idx      smallint NOT NULL,
    status        smallint NOT NULL,            -- core.dtypes AS_*
    side          smallint NOT NULL,            -- -1 no order
    order_action  smallint NOT NULL,
    price         smallint NOT NULL,            -- limit (-1 none)
    count         bigint   NOT NULL,            -- sent
    filled        bigint   NOT NULL,
    fee           bigint   NOT NULL,
    reject        smallint NOT NULL,            -- engine REJ_* (-1 paper client refused)
    risk          smallint NOT NULL,            -- kalshi_rl.trade.risk.RiskReason
    position      bigint   NOT NULL,            -- after the decision
    cash          bigint   NOT NULL,            -- the market's sub-account cash after
    account_value bigint   NOT NULL,            -- the market's mark-to-market value after
    probs         real[]   NOT NULL,            -- action probabilities
    PRIMARY KEY (episode_id, step)
);
CREATE INDEX trading_actions_market ON trading_actions (market_id, ts);
