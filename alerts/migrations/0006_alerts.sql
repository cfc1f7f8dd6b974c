-- Alerts raised by the analytics workers, their history, and the incidents that group them.

create table incident (
    id            bigint generated always as identity primary key,
    key           text        not null,
    title         text        not null,
    bureau        text        not null,
    division_code text        not null references division (code),
    status        text        not null default 'open' check (status in ('open', 'closed')),
    opened_at     timestamptz not null default now(),
    closed_at     timestamptz
);
create unique index incident_one_open on incident (key) where status = 'open';

create table alert (
    id              bigint generated always as identity primary key,
    terminal_id     bigint           not null references terminal (id) on delete cascade,
    rule            text             not null,
    family          text             not null,
    severity        text             not null check (severity in ('info', 'warning', 'critical')),
    bureau          text             not null check (bureau in ('environment', 'housing', 'steward')),
    department_code text             not null references department (code),
    division_code   text             not null references division (code),
    status          text             not null default 'open'
                    check (status in ('open', 'acknowledged', 'resolved', 'closed')),
    observed_start  timestamptz      not null,
    observed_end    timestamptz,
    worst_value     double precision,
    detail          text             not null,
    incident_id     bigint references incident (id),
    opened_at       timestamptz      not null default now(),
    updated_at      timestamptz      not null default now(),
    resolved_at     timestamptz,
    closed_at       timestamptz
);
-- Exactly one open or acknowledged alert per (terminal, rule), whatever the number of workers.
create unique index alert_one_active on alert (terminal_id, rule) where status in ('open', 'acknowledged');
create index alert_terminal_rule on alert (terminal_id, rule, observed_start);
create index alert_list on alert (status, bureau, opened_at desc);

create table alert_event (
    id       bigint generated always as identity primary key,
    alert_id bigint      not null references alert (id) on delete cascade,
    at       timestamptz not null default now(),
    actor    text        not null,
    action   text        not null check (action in ('open', 'update', 'acknowledge', 'resolve', 'close', 'retract',
                                                    'comment')),
    comment  text
);
create index alert_event_alert on alert_event (alert_id, id);

-- How far each analytics shard has read (by reading.received_at).
create table analytics_watermark (
    shard       integer     not null,
    shards      integer     not null,
    received_at timestamptz not null,
    primary key (shard, shards)
);

create index reading_received on reading using brin (received_at);
