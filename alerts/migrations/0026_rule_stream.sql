-- The streaming rule workers (analytics/stream.py).

-- Where each (terminal, rule) stands: the last reading judged and the episode in progress, so a restarted
-- worker, or the worker a terminal moves to, resumes exactly.
create table rule_state (
    terminal_id bigint      not null references terminal (id) on delete cascade,
    rule        text        not null,
    judged_to   timestamptz not null,
    episode     jsonb,
    primary key (terminal_id, rule)
);

-- One row per terminal the workers have judged: locked while a worker judges it (two workers never judge one
-- terminal at once), and its version tells a worker whether the state it holds in memory is still current.
create table rule_cursor (
    terminal_id bigint primary key references terminal (id) on delete cascade,
    version     bigint      not null default 0,
    worker      text        not null
);

-- How far each worker has taken in what arrived (reading.received_at), for the catch-up after a restart or
-- when a worker leaves and its terminals move.
create table rule_watermark (
    worker      text primary key,
    received_at timestamptz not null
);

-- Replaced by rule_watermark: workers share terminals by membership, not by a fixed shard count.
drop table analytics_watermark;
