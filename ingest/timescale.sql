-- TimescaleDB only. Applied by ingest.timescale.apply (on `ganzhi db migrate` and every maintenance run) when,
-- and only when, the timescaledb extension is installed; never a numbered migration, so a plain PostgreSQL
-- server never sees it. Safe to apply again. It refers only to the reading table of the one definition
-- (ingest/migrations/0002_readings.sql) and to names made here; tests/ingest/test_timescale_sql.py checks that
-- every column named here exists there. It cannot run on the development machines (no extension): run the
-- manual check in docs/deploy.md ("TimescaleDB: the manual check") on a real server after changing it.

-- 1. The readings become a hypertable of one-day chunks. A table partitioned by PostgreSQL (0002 on a server
--    without the extension, or before it was installed) cannot be one: it is first replaced by a plain table of
--    the same definition (LIKE ... INCLUDING ALL: columns, defaults, checks, primary key, indexes) with its rows.
do $$
begin
    if exists (select 1 from pg_partitioned_table where partrelid = 'reading'::regclass) then
        create table reading_unpartitioned (like reading including all);
        insert into reading_unpartitioned select * from reading;
        drop table reading;
        alter table reading_unpartitioned rename to reading;
    end if;
end
$$;

select create_hypertable('reading', 'ts', chunk_time_interval => interval '1 day',
                         if_not_exists => true, migrate_data => true);

-- 2. Chunks older than a week are compressed, one segment per terminal and metric, in time order.
do $$
begin
    if not exists (select 1 from timescaledb_information.hypertables
                    where hypertable_name = 'reading' and compression_enabled) then
        alter table reading set (timescaledb.compress, timescaledb.compress_segmentby = 'terminal_id, metric',
                                 timescaledb.compress_orderby = 'ts');
    end if;
end
$$;
select add_compression_policy('reading', interval '7 days', if_not_exists => true);

-- 3. Hourly and daily rollups as continuous aggregates, under the names and columns of the plain rollup tables
--    (0040), which are renamed away (their history kept as reading_hourly_plain / reading_daily_plain).
--    Real time (materialized_only = false): a query sees the newest readings too. Daily buckets are Beijing
--    days (Asia/Shanghai has no daylight saving: the same buckets as date_bin from 2000-01-01 00:00+08).
do $$
begin
    if exists (select 1 from pg_class where relname = 'reading_hourly' and relkind = 'r') then
        alter table reading_hourly rename to reading_hourly_plain;
    end if;
    if exists (select 1 from pg_class where relname = 'reading_daily' and relkind = 'r') then
        alter table reading_daily rename to reading_daily_plain;
    end if;
end
$$;

create materialized view if not exists reading_hourly
with (timescaledb.continuous, timescaledb.materialized_only = false) as
select terminal_id, metric, time_bucket(interval '1 hour', ts) as bucket,
       count(*) as readings, sum(value) as value_sum, min(value) as value_min, max(value) as value_max,
       min(ts) as first_ts, max(ts) as last_ts
  from reading
 group by terminal_id, metric, time_bucket(interval '1 hour', ts)
with no data;

create materialized view if not exists reading_daily
with (timescaledb.continuous, timescaledb.materialized_only = false) as
select terminal_id, metric, time_bucket(interval '1 day', ts, 'Asia/Shanghai') as bucket,
       count(*) as readings, sum(value) as value_sum, min(value) as value_min, max(value) as value_max,
       min(ts) as first_ts, max(ts) as last_ts
  from reading
 group by terminal_id, metric, time_bucket(interval '1 day', ts, 'Asia/Shanghai')
with no data;

-- 4. Refresh windows reach back 30 days (late readings up to then are folded in). The raw retention policy
--    (ingest.store.maintain, GANZHI_RETENTION_DAYS) must reach further back than that (ingest.timescale checks
--    it): a refresh over dropped chunks would empty those buckets. The aggregates have no retention policy of
--    their own, so dropping raw chunks never deletes aggregate history.
select add_continuous_aggregate_policy('reading_hourly', start_offset => interval '30 days',
                                       end_offset => interval '1 hour', schedule_interval => interval '5 minutes',
                                       if_not_exists => true);
select add_continuous_aggregate_policy('reading_daily', start_offset => interval '30 days',
                                       end_offset => interval '1 day', schedule_interval => interval '1 hour',
                                       if_not_exists => true);
