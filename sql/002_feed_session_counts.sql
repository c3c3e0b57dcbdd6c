-- kalshi-rl schema, version 2: what a collector session did, by kind.
-- n_gaps counts gap EVENTS (a seq jump, a disconnect, a desync, a subscription error);
-- n_gap_rows the feed_gaps rows they wrote (one per affected market); n_end_rows the
-- end-of-recording rows of a clean stop (feed_gaps.reason = 6, core.dtypes.GAP_REASON_END);
-- n_reconnects counts reconnections (connections after the first), n_connect_failures the
-- attempts that never got a socket up.  rejects: decoder rejections by reason
-- ({"off_grid_price": 3, ...}); uptime: fraction of the session with the socket up.
ALTER TABLE feed_sessions
    ADD COLUMN n_gap_rows          bigint NOT NULL DEFAULT 0,
    ADD COLUMN n_end_rows          bigint NOT NULL DEFAULT 0,
    ADD COLUMN n_connect_failures  bigint NOT NULL DEFAULT 0,
    ADD COLUMN n_desyncs           bigint NOT NULL DEFAULT 0,
    ADD COLUMN rejects             jsonb  NOT NULL DEFAULT '{}',
    ADD COLUMN books_valid_at_stop integer,
    ADD COLUMN uptime              real;
