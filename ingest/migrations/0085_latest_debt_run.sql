-- A debt of latest_reading names the run of its worker (ingest/latest.py): after a session takeover the old
-- process of a client id may still flush its held keys, and deleting by worker alone took the new run's debt
-- with it (a crash of the new run then lost the fold of its held keys). Each run deletes only its own row.
--
-- Expand/contract (docs/deploy.md §8): the previous release's workers keep running between `migrate` and
-- `up -d` and write latest_debt (worker, since) with `on conflict (worker)`, so latest_debt stays as it is and
-- the runs' debts go to a table of their own. This release's repair also folds and deletes latest_debt's rows
-- (a worker's own at its start, anyone's once stale); the release after it drops latest_debt.
create table latest_debt_run (
    worker text        not null,
    run    text        not null,
    since  timestamptz not null,
    primary key (worker, run)
);
