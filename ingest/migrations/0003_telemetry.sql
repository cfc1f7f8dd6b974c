-- What ingestion keeps besides readings: the newest value of each (terminal, metric), each
-- device's last contact and connection state, dead letters, and device credentials for the broker.

create table latest_reading (
    terminal_id bigint           not null references terminal (id) on delete cascade,
    metric      text             not null,
    ts          timestamptz      not null,
    value       double precision not null,
    flag        text,
    primary key (terminal_id, metric)
);

-- Poles and terminals by city code: a pole gateway has a connection but no readings of its own.
create table device_state (
    code            text primary key,
    last_seen_at    timestamptz,
    last_reading_at timestamptz,
    connection      text check (connection in ('online', 'offline')),
    connection_at   timestamptz
);

create table dead_letter (
    id          bigint generated always as identity primary key,
    received_at timestamptz not null default now(),
    topic       text        not null,
    publisher   text,
    payload     bytea       not null,
    reason      text        not null,
    stored      integer     not null default 0
);
create index dead_letter_received on dead_letter (received_at);
create index dead_letter_publisher on dead_letter (publisher, received_at);
