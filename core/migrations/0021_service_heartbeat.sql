-- One row per long-running service process (core/runtime.py), read by /healthz.
create table service_heartbeat (
    name       text primary key,
    kind       text not null,
    host       text not null,
    pid        integer not null,
    started_at timestamptz not null,
    beat_at    timestamptz not null,
    state      text not null check (state in ('running', 'failed', 'stopped')),
    detail     jsonb not null default '{}',
    counters   jsonb not null default '{}'
);
