-- The time-series store: one row per (terminal, metric, observation time). This is the one definition of
-- the reading table. On plain PostgreSQL it is range-partitioned by day and the platform keeps the
-- partitions itself (ingest.store.maintain). Where the timescaledb extension is installed, ingest/timescale.sql
-- turns this same table into a hypertable (and adds compression, retention and continuous aggregates);
-- nothing else in the schema differs. Queries use plain SQL only (date_bin, not time_bucket).
-- This file once also held a TimescaleDB branch; databases migrated with that text are accepted:
-- replaces checksum ef43aae8532aab2f6735886f63bcb324adb25df8e68c4525d4f6795a539107e3

create table reading (
    terminal_id bigint           not null,
    metric      text             not null,
    ts          timestamptz      not null,
    value       double precision not null,
    flag        text check (flag ~ '^[A-Za-z]$'),
    received_at timestamptz      not null default clock_timestamp(),
    primary key (terminal_id, metric, ts)
) partition by range (ts);
