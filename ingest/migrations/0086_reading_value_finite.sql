-- A reading's value is a finite number (issue 10: `Cou=inf` was stored as Infinity and shown as null). The
-- ingest paths refuse non-finite values before they reach the store; this makes the store say so too.
--
-- Expand-only and cheap on the partitioned (or hyper-) table: added NOT VALID, the constraint is checked for
-- every row written from now on (the previous release's writers included: a row it refuses is dead-lettered
-- by their split path) without reading the rows already stored. It takes ACCESS EXCLUSIVE on the table and
-- every partition, and while it waits for them every writer queues behind it: lock_timeout bounds that wait.
-- A migration that fails with "canceling statement due to lock timeout" has changed nothing (one transaction):
-- run `ganzhi db migrate` again (a long query or transaction on `reading` held a lock meanwhile). New partitions
-- get the constraint. The rows stored before are moved out and the constraint validated by maintenance, one
-- partition at a time (ingest/store.py validate_finite; docs/deploy.md).
-- replaces checksum aba51c32058dff81a6a5450f078d751cad353f11a84a034cb371f15948717287
set local lock_timeout = '5s';

alter table reading
    add constraint reading_value_finite check (value not in ('Infinity', '-Infinity', 'NaN')) not valid;
