-- Dispatch (督办): tasks that send a person to an alert, incident or fire event, their steps and photos, and the
-- escalation rules (data, not code) by which overdue tasks climb township → county → city bureau.

create table escalation_rule (
    family   text,                      -- null: every family
    severity text    not null check (severity in ('info', 'warning', 'critical')),
    level    text    not null check (level in ('township', 'county')),
    hours    integer not null check (hours >= 0),
    unique nulls not distinct (family, severity, level)
);
comment on table escalation_rule is
    'hours an overdue task stays at a level before it escalates to the next; the most specific family wins';

insert into escalation_rule (family, severity, level, hours) values
    (null, 'critical', 'township', 2), (null, 'critical', 'county', 4),
    (null, 'warning', 'township', 24), (null, 'warning', 'county', 48),
    (null, 'info', 'township', 72), (null, 'info', 'county', 144),
    ('fire', 'warning', 'township', 1), ('fire', 'warning', 'county', 2),
    ('fire', 'critical', 'township', 1), ('fire', 'critical', 'county', 1),
    ('gas', 'critical', 'township', 1), ('gas', 'critical', 'county', 2);

create table task (
    id              bigint generated always as identity primary key,
    subject_type    text        not null check (subject_type in ('alert', 'incident', 'fire_event')),
    subject_id      bigint      not null,
    alert_id        bigint      not null references alert (id) on delete cascade,
    family          text        not null,
    severity        text        not null,
    division_code   text        not null references division (code),
    department_code text        not null references department (code),
    assigner_id     bigint      not null references account (id),
    assignee_id     bigint      not null references account (id),
    note            text,
    status          text        not null default 'assigned'
                    check (status in ('assigned', 'verified', 'rectified', 'closed')),
    level           text        not null default 'township' check (level in ('township', 'county', 'city')),
    level_since     timestamptz not null default now(),
    due_at          timestamptz not null,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    closed_at       timestamptz
);
create index task_assignee on task (assignee_id, status);
create index task_open_due on task (due_at) where status <> 'closed';
create index task_month on task (created_at);

create table task_step (
    id      bigint generated always as identity primary key,
    task_id bigint      not null references task (id) on delete cascade,
    at      timestamptz not null default now(),
    actor   text        not null,
    action  text        not null check (action in ('assign', 'verify', 'rectify', 'close', 'reject', 'escalate')),
    note    text,
    lat     double precision check (lat between -90 and 90),
    lon     double precision check (lon between -180 and 180)
);
create index task_step_task on task_step (task_id, id);

create table task_photo (
    id           bigint generated always as identity primary key,
    step_id      bigint not null references task_step (id) on delete cascade,
    content_type text   not null check (content_type in ('image/jpeg', 'image/png')),
    image        bytea  not null
);
create index task_photo_step on task_photo (step_id);
