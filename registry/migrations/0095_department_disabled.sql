-- A department the platform admin disabled (wound up, merged): it takes no new objects, accounts or grants,
-- and its accounts stop working (registry/departments.py). Expand-only: the previous release ignores it.
alter table department add column disabled_at timestamptz;
