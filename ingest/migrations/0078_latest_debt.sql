-- An ingest worker writes latest_reading behind its readings (ingest/latest.py): the newest value of each key
-- once per interval rather than with every batch. While it holds keys not written yet, its row here says since
-- when (written in the transaction of the first such batch, deleted in the one that writes them). A worker that
-- dies leaves its row; the readings received since then are folded into latest_reading by the next worker to
-- start, or by any worker once the row is older than a minute.
create table latest_debt (
    worker text primary key,
    since  timestamptz not null
);
