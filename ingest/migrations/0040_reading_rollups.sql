-- Hourly and daily rollups of the readings on plain PostgreSQL, so that a year's chart of one terminal reads
-- 365 rows instead of hundreds of thousands. They are kept by ingest.rollups.advance (the maintenance service):
-- each run adds the readings that ARRIVED (received_at, BRIN-indexed by 0006) since the watermark, whatever
-- their observation time, so late readings land in their old buckets; the watermark moves in the same
-- transaction, so a reading is counted exactly once. Retention drops reading partitions and never touches
-- these tables: the rollups keep the history. Buckets start at Beijing midnight, as ingest.queries.BUCKET_ORIGIN.
-- With TimescaleDB, ingest/timescale.sql renames these tables away and puts continuous aggregates of the same
-- names and columns in their place.

create table reading_hourly (
    terminal_id bigint           not null,
    metric      text             not null,
    bucket      timestamptz      not null,
    readings    bigint           not null check (readings > 0),
    value_sum   double precision not null,
    value_min   double precision not null,
    value_max   double precision not null,
    first_ts    timestamptz      not null,
    last_ts     timestamptz      not null,
    primary key (terminal_id, metric, bucket)
);

create table reading_daily (like reading_hourly including all);

create table reading_rollup_state (
    one        boolean primary key default true check (one),
    arrived_to timestamptz not null
);
comment on column reading_rollup_state.arrived_to is
    'readings with received_at before this are in the rollups; those at or after it are not yet';
-- A store made before this migration is rolled up from its first reading on (one scan, here); a new one from now.
insert into reading_rollup_state (arrived_to) select coalesce(min(received_at), now()) from reading;
