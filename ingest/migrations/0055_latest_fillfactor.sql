-- latest_reading and device_state are rewritten row by row with every batch (one row per series and per device).
-- Room left on each page lets those updates be HOT (the new version on the same page, no index entry), and
-- pages are then pruned in place without waiting for vacuum: without it the tables and their primary keys
-- bloat with dead versions, and each upsert walks them. Pages made before this keep their layout until the
-- table is rewritten (VACUUM FULL, or pg_repack, at a quiet hour).
alter table latest_reading set (fillfactor = 50);
alter table device_state set (fillfactor = 50);
