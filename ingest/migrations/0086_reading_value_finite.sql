-- A reading's value is a finite number (issue 10: `Cou=inf` was stored as Infinity and shown as null). The
-- ingest paths refuse non-finite values before they reach the store; this makes the store say so too.
--
-- Expand-only and cheap on the partitioned (or hyper-) table: added NOT VALID, the constraint is checked for
-- every row written from now on (the previous release's writers included: a row it refuses is dead-lettered
-- by their split path) without reading the rows already stored, so the table's lock lasts only this statement's
-- transaction. New partitions get it, valid. Migration 0087 moves the old non-finite rows out and validates it,
-- a scan that does not block writers.
alter table reading
    add constraint reading_value_finite check (value not in ('Infinity', '-Infinity', 'NaN')) not valid;
