-- The services run as an application role that does not own the tables (docs/deploy.md, Database roles), and
-- only a table's owner may add partitions to it. An ingest worker storing a late reading (a logger's backlog, a
-- day maintenance did not make ahead) creates that day's readings partition through this function, which runs
-- as its owner and does nothing else. The caller holds the partitions' advisory lock (core/partitions.py);
-- `ganzhi db migrate` grants EXECUTE to the application role.

create function ensure_reading_partition(day date) returns boolean
    language plpgsql security definer set search_path = public, pg_temp as $$
declare
    name text := 'reading_p' || to_char(day, 'YYYYMMDD');
begin
    if to_regclass(name) is not null then
        return false;
    end if;
    execute format('create table %I partition of reading for values from (%L) to (%L)',
                   name, day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');
    return true;
end
$$;

revoke execute on function ensure_reading_partition(date) from public;
