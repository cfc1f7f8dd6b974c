-- The manual check of the TimescaleDB path (docs/deploy.md, "TimescaleDB: the manual check"). Run it on a
-- SCRATCH database of the real server after `ganzhi db migrate` made it, never on the production one (it
-- drops chunks):
--     psql -v ON_ERROR_STOP=1 -d ganzhi_check -f deploy/timescale-check.sql
-- It ends with "timescale check passed", or stops at the first failed expectation with its reason.

\set QUIET on
do $$
begin
    if not exists (select 1 from pg_extension where extname = 'timescaledb') then
        raise exception 'timescaledb is not installed in this database (shared_preload_libraries?)';
    end if;
    if not exists (select 1 from timescaledb_information.hypertables
                    where hypertable_name = 'reading' and compression_enabled) then
        raise exception 'reading is not a hypertable with compression';
    end if;
    if (select count(*) from timescaledb_information.continuous_aggregates
         where view_name in ('reading_hourly', 'reading_daily') and not materialized_only) <> 2 then
        raise exception 'the real-time continuous aggregates reading_hourly and reading_daily are missing';
    end if;
    if (select count(*) from timescaledb_information.jobs where hypertable_name = 'reading'
         and proc_name in ('policy_compression', 'policy_retention')) <> 2 then
        raise exception 'reading lacks its compression or retention policy';
    end if;
    if exists (select 1 from timescaledb_information.jobs j
                 join timescaledb_information.continuous_aggregates c
                   on c.materialization_hypertable_name = j.hypertable_name
                where j.proc_name = 'policy_retention') then
        raise exception 'a continuous aggregate has a retention policy: it would delete rollup history';
    end if;
end
$$;

-- Readings of a test terminal (id -1): one every 10 minutes over the last 40 days, one metric.
insert into reading (terminal_id, metric, ts, value)
select -1, 'check', ts, extract(epoch from ts)::bigint % 97
  from generate_series(date_trunc('hour', now()) - interval '40 days', now() - interval '1 hour',
                       interval '10 minutes') ts;
call refresh_continuous_aggregate('reading_hourly', null, date_trunc('hour', now()));
call refresh_continuous_aggregate('reading_daily', null, date_trunc('day', now(), 'Asia/Shanghai'));

do $$
declare
    raw_days bigint;
    agg_days bigint;
begin
    -- The daily aggregate equals the raw aggregation by Beijing day (the plain path's date_bin buckets).
    select count(*) into raw_days from (
        select date_bin('1 day', ts, '2000-01-01 00:00:00+08'), count(*), sum(value), min(value), max(value)
          from reading where terminal_id = -1 group by 1
        except
        select bucket, readings, value_sum, value_min, value_max from reading_daily where terminal_id = -1) d;
    if raw_days <> 0 then
        raise exception '% daily buckets differ from the raw aggregation', raw_days;
    end if;
    -- Compression keeps the readings readable.
    perform compress_chunk(c, if_not_compressed => true) from show_chunks('reading', older_than => interval '8 days') c;
    if (select count(*) from reading where terminal_id = -1) <> (select sum(readings) from reading_hourly
                                                                  where terminal_id = -1) then
        raise exception 'readings and hourly aggregate disagree after compression';
    end if;
    -- Dropping raw chunks (what the retention policy does) keeps the aggregate history...
    select count(*) into agg_days from reading_daily where terminal_id = -1;
    perform drop_chunks('reading', older_than => interval '35 days');
    if (select count(*) from reading_daily where terminal_id = -1) <> agg_days then
        raise exception 'dropping raw chunks deleted daily aggregate rows';
    end if;
end
$$;

-- ...and so does the refresh policy's own window (30 days back, inside the retention).
call refresh_continuous_aggregate('reading_daily', now() - interval '30 days', date_trunc('day', now(), 'Asia/Shanghai'));
do $$
begin
    if (select min(bucket) from reading_daily where terminal_id = -1) > now() - interval '39 days' then
        raise exception 'the oldest daily buckets are gone after a policy-window refresh';
    end if;
end
$$;

delete from reading where terminal_id = -1;
\echo timescale check passed
