-- migration 1: trades, quotes, candles, gaps

CREATE TABLE tickwire.trades (
    provider text COLLATE "C" NOT NULL,
    symbol text COLLATE "C" NOT NULL,
    ts timestamptz NOT NULL,
    received_ts timestamptz NOT NULL,
    price numeric NOT NULL,
    size numeric NOT NULL,
    side text,
    trade_id text COLLATE "C" NOT NULL,
    CONSTRAINT trades_key UNIQUE (provider, symbol, ts, trade_id)
);

CREATE TABLE tickwire.quotes (
    provider text COLLATE "C" NOT NULL,
    symbol text COLLATE "C" NOT NULL,
    ts timestamptz NOT NULL,
    received_ts timestamptz NOT NULL,
    bid numeric,
    bid_size numeric,
    ask numeric,
    ask_size numeric,
    CONSTRAINT quotes_key PRIMARY KEY (provider, symbol, ts)
);

CREATE TABLE tickwire.candles (
    provider text COLLATE "C" NOT NULL,
    symbol text COLLATE "C" NOT NULL,
    "interval" text COLLATE "C" NOT NULL,
    "start" timestamptz NOT NULL,
    "open" numeric NOT NULL,
    "high" numeric NOT NULL,
    "low" numeric NOT NULL,
    "close" numeric NOT NULL,
    volume numeric,
    "trades" bigint,
    basis text NOT NULL,
    closed boolean NOT NULL,
    source text NOT NULL,
    CONSTRAINT candles_key PRIMARY KEY (provider, symbol, "interval", "start")
);

CREATE TABLE tickwire.gaps (
    provider text COLLATE "C" NOT NULL,
    symbol text COLLATE "C" NOT NULL,
    kind text COLLATE "C" NOT NULL,
    "start" timestamptz NOT NULL,
    "end" timestamptz NOT NULL,
    reason text NOT NULL,
    status text NOT NULL,
    CONSTRAINT gaps_key PRIMARY KEY (provider, symbol, kind, "start")
);

SELECT create_hypertable('tickwire.trades', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE);

ALTER TABLE tickwire.trades SET (timescaledb.compress, timescaledb.compress_segmentby = 'provider, symbol', timescaledb.compress_orderby = 'ts DESC');

SELECT add_compression_policy('tickwire.trades', compress_after => INTERVAL '7 days', if_not_exists => TRUE);

SELECT add_retention_policy('tickwire.trades', drop_after => INTERVAL '30 days', if_not_exists => TRUE);

SELECT create_hypertable('tickwire.quotes', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE);

ALTER TABLE tickwire.quotes SET (timescaledb.compress, timescaledb.compress_segmentby = 'provider, symbol', timescaledb.compress_orderby = 'ts DESC');

SELECT add_compression_policy('tickwire.quotes', compress_after => INTERVAL '7 days', if_not_exists => TRUE);

SELECT add_retention_policy('tickwire.quotes', drop_after => INTERVAL '30 days', if_not_exists => TRUE);

SELECT create_hypertable('tickwire.candles', by_range('start', INTERVAL '1 day'), if_not_exists => TRUE);

ALTER TABLE tickwire.candles SET (timescaledb.compress, timescaledb.compress_segmentby = 'provider, symbol, "interval"', timescaledb.compress_orderby = '"start" DESC');

SELECT add_compression_policy('tickwire.candles', compress_after => INTERVAL '7 days', if_not_exists => TRUE);

SELECT add_retention_policy('tickwire.candles', drop_after => INTERVAL '30 days', if_not_exists => TRUE);

CREATE MATERIALIZED VIEW tickwire.trades_1m WITH (timescaledb.continuous) AS
SELECT time_bucket(INTERVAL '1 minute', ts) AS start, provider, symbol,
       first(price, ts) AS open, max(price) AS high, min(price) AS low,
       last(price, ts) AS close, sum(size) AS volume, count(*) AS trades
FROM tickwire.trades
GROUP BY time_bucket(INTERVAL '1 minute', ts), provider, symbol
WITH NO DATA;

SELECT add_continuous_aggregate_policy('tickwire.trades_1m', start_offset => INTERVAL '2 hours', end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE);

SELECT add_retention_policy('tickwire.trades_1m', drop_after => INTERVAL '30 days', if_not_exists => TRUE);

-- migration 2: book_snapshots

CREATE TABLE tickwire.book_snapshots (
    provider text COLLATE "C" NOT NULL,
    symbol text COLLATE "C" NOT NULL,
    ts timestamptz NOT NULL,
    received_ts timestamptz NOT NULL,
    bids numeric[] NOT NULL,
    asks numeric[] NOT NULL,
    sequence bigint,
    CONSTRAINT book_snapshots_key PRIMARY KEY (provider, symbol, ts)
);

SELECT create_hypertable('tickwire.book_snapshots', by_range('ts', INTERVAL '1 day'), if_not_exists => TRUE);

ALTER TABLE tickwire.book_snapshots SET (timescaledb.compress, timescaledb.compress_segmentby = 'provider, symbol', timescaledb.compress_orderby = 'ts DESC');

SELECT add_compression_policy('tickwire.book_snapshots', compress_after => INTERVAL '7 days', if_not_exists => TRUE);

SELECT add_retention_policy('tickwire.book_snapshots', drop_after => INTERVAL '30 days', if_not_exists => TRUE);

-- migration 3: gaps.detail (failed gaps)

ALTER TABLE tickwire.gaps ADD COLUMN detail text;
