-- The time-series store: one row per (terminal, metric, observation time).
-- With TimescaleDB (preloaded on the server) the table is a hypertable with compression;
-- otherwise it is range-partitioned by day and the platform keeps the partitions itself
-- (ingest.store.maintain). Queries use plain SQL only (date_bin, not time_bucket).

do $$
begin
    if exists (select 1 from pg_available_extensions where name = 'timescaledb') then
        begin
            create extension if not exists timescaledb;
        exception when others then
            raise notice 'timescaledb is available but cannot be loaded (%); using native partitions', sqlerrm;
        end;
    end if;

    if exists (select 1 from pg_extension where extname = 'timescaledb') then
        create table reading (
            terminal_id bigint           not null,
            metric      text             not null,
            ts          timestamptz      not null,
            value       double precision not null,
            flag        text check (flag ~ '^[A-Za-z]$'),
            received_at timestamptz      not null default clock_timestamp(),
            primary key (terminal_id, metric, ts)
        );
        perform create_hypertable('reading', 'ts', chunk_time_interval => interval '1 day');
        alter table reading set (timescaledb.compress, timescaledb.compress_segmentby = 'terminal_id, metric',
                                 timescaledb.compress_orderby = 'ts');
        perform add_compression_policy('reading', interval '7 days');
    else
        create table reading (
            terminal_id bigint           not null,
            metric      text             not null,
            ts          timestamptz      not null,
            value       double precision not null,
            flag        text check (flag ~ '^[A-Za-z]$'),
            received_at timestamptz      not null default clock_timestamp(),
            primary key (terminal_id, metric, ts)
        ) partition by range (ts);
    end if;
end
$$;
