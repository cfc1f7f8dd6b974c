-- The partition maker of 0090 runs as the tables' owner (often a superuser) for the services' role, so nothing in
-- it may resolve to an object that role could make. 0090 searched schema public for functions: to_char(date, text)
-- is no built-in (PostgreSQL reaches to_char(timestamp, text) by a cast), so a public.to_char(date, text) made by
-- a role that may create in public (every role on PostgreSQL <= 14 and on pg_upgrade'd clusters) was the exact
-- match and ran with the owner's rights. Here only pg_catalog is searched (pg_temp last, and never for
-- functions), every argument has the built-in's exact type, the tables are named with their schema, and the
-- bounds are ISO 8601 literals, read alike under any DateStyle.
--
-- The day is bounded too, or the services' role could make partitions years ahead that retention never drops.
-- The ingest refuses readings stamped more than five minutes ahead (ingest/validate.py), so tomorrow (UTC) is
-- the latest day it stores; one more day covers clocks that disagree. Backwards it refuses readings older than
-- GANZHI_RETENTION_DAYS, which the database does not know: a day older than ten years (3660 days) is refused
-- unless retention keeps partitions older still (then back to the oldest one). Older partitions than retention
-- are dropped by maintenance in any case.

create or replace function ensure_reading_partition(day date) returns boolean
    language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
    name constant text := 'reading_p' || to_char(day::timestamp, 'YYYYMMDD');
    today constant date := timezone('UTC', now())::date;
    latest constant date := today + 2;
    earliest date;
begin
    if to_regclass('public.' || quote_ident(name)) is not null then
        return false;
    end if;
    select least(today - 3660, to_date(substr(min(c.relname::text), 10), 'YYYYMMDD'))
      into earliest
      from pg_inherits i
      join pg_class c on c.oid = i.inhrelid
     where i.inhparent = 'public.reading'::regclass and c.relname ~ '^reading_p[0-9]{8}$';
    if day is null or day < earliest or day > latest then
        raise exception using errcode = 'invalid_parameter_value',
            message = format('no readings partition for %s: only days from %s to %s (UTC)',
                             to_char(day::timestamp, 'YYYY-MM-DD'), to_char(earliest::timestamp, 'YYYY-MM-DD'),
                             to_char(latest::timestamp, 'YYYY-MM-DD'));
    end if;
    execute format('create table public.%I partition of public.reading for values from (%L) to (%L)',
                   name, to_char(day::timestamp, 'YYYY-MM-DD') || ' 00:00:00+00',
                   to_char((day + 1)::timestamp, 'YYYY-MM-DD') || ' 00:00:00+00');
    return true;
end
$$;

revoke execute on function ensure_reading_partition(date) from public;
