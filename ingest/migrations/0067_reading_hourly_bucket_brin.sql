-- The hourly rollups past GANZHI_HOURLY_ROLLUP_RETENTION_DAYS are deleted by bucket (ingest.rollups.expire_hourly);
-- the primary key leads with the terminal, so a range of buckets needs an index of its own. Rows are added as time
-- goes on, so their order on disk follows the bucket: a BRIN index is a few pages. With TimescaleDB,
-- reading_hourly is a continuous aggregate by now (ingest/timescale.sql) and its chunks are dropped instead.
do $$
begin
    if exists (select 1 from pg_class where relname = 'reading_hourly' and relkind = 'r') then
        create index if not exists reading_hourly_bucket_brin on reading_hourly using brin (bucket);
    end if;
end
$$;
