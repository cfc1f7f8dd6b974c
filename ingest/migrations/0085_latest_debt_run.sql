-- A latest_debt row names the run of its worker (ingest/latest.py): after a session takeover the old process of
-- a client id may still flush its held keys, and deleting by worker alone took the new run's debt with it (a
-- crash of the new run then lost the fold of its held keys). Each run deletes only its own row. Rows left by
-- runs before this migration get the run ''.
alter table latest_debt add column run text not null default '';
alter table latest_debt alter column run drop default;
alter table latest_debt drop constraint latest_debt_pkey;
alter table latest_debt add primary key (worker, run);
