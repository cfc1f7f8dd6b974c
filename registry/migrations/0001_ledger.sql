-- The unified ledger (一套台账): divisions, departments, smart poles, terminals,
-- sharing grants, city-code serials and the change log.

create extension if not exists pg_trgm;

create table division (
    code        text primary key check (code ~ '^[0-9]{6}([0-9]{3}([0-9]{3})?)?$'),
    name        text not null,
    name_en     text,
    level       text not null check (level in ('city', 'district', 'county', 'county-level city', 'township', 'grid')),
    parent_code text references division (code) on delete restrict,
    boundary    jsonb,
    unique (parent_code, name)
);

create table department (
    code    text primary key check (code ~ '^[a-z][a-z0-9_]{1,31}$'),
    name    text not null unique,
    name_en text not null,
    aliases text[] not null default '{}',
    bureau  text not null check (bureau in ('environment', 'housing', 'water', 'other'))
);

create table metric (
    key       text primary key,
    name      text not null,
    name_zh   text not null,
    unit      text not null,
    low       double precision not null,
    high      double precision not null,
    precision smallint not null,
    hj212     text,
    check (low < high)
);

create table terminal_kind (
    key        text primary key,
    name       text not null,
    name_zh    text not null unique,
    class_code text not null unique check (class_code ~ '^[0-9]{2}$'),
    steward    text not null references department (code) on delete restrict,
    metrics    text[] not null,
    interval_s integer not null check (interval_s > 0)
);

create table code_sequence (
    division_code text not null references division (code) on delete restrict,
    class_code    text not null check (class_code ~ '^[0-9]{2}$'),
    last_serial   integer not null check (last_serial between 0 and 999999),
    primary key (division_code, class_code)
);

create table pole (
    id              bigint generated always as identity primary key,
    code            text not null unique check (code ~ '^[0-9]{8}[0-9A-Z]{7}$'),
    name            text not null,
    department_code text not null references department (code) on delete restrict,
    division_code   text not null references division (code) on delete restrict,
    lon             double precision not null check (lon between -180 and 180),
    lat             double precision not null check (lat between -90 and 90),
    address         text,
    install_date    date,
    status          text not null default 'active' check (status in ('planned', 'active', 'maintenance', 'retired')),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index pole_division on pole (division_code);
create index pole_department on pole (department_code);
create index pole_location on pole using gist (point(lon, lat));
create index pole_code_prefix on pole (code text_pattern_ops);
create index pole_text on pole using gin ((name || ' ' || coalesce(address, '')) gin_trgm_ops);

create table terminal (
    id                bigint generated always as identity primary key,
    code              text not null unique check (code ~ '^[0-9]{8}[0-9A-Z]{7}$'),
    name              text not null,
    kind              text not null references terminal_kind (key) on delete restrict,
    department_code   text not null references department (code) on delete restrict,
    pole_id           bigint references pole (id) on delete restrict,
    division_code     text not null references division (code) on delete restrict,
    lon               double precision not null check (lon between -180 and 180),
    lat               double precision not null check (lat between -90 and 90),
    address           text,
    install_date      date,
    status            text not null default 'active' check (status in ('planned', 'active', 'maintenance', 'retired')),
    vendor            text,
    model             text,
    protocol          text not null default 'mqtt' check (protocol in ('mqtt', 'hj212', 'rtsp', 'http', 'other')),
    report_interval_s integer not null check (report_interval_s > 0),
    metrics           text[] not null default '{}',
    attrs             jsonb not null default '{}',
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);
create index terminal_division on terminal (division_code, code);
create index terminal_division_kind on terminal (division_code, kind, code);
create index terminal_department on terminal (department_code, code);
create index terminal_kind_idx on terminal (kind, code);
create index terminal_pole on terminal (pole_id);
create index terminal_status on terminal (status, code);
create index terminal_location on terminal using gist (point(lon, lat));
create index terminal_code_prefix on terminal (code text_pattern_ops);
create index terminal_text on terminal using gin ((name || ' ' || coalesce(address, '')) gin_trgm_ops);

create table sharing_grant (
    id           bigint generated always as identity primary key,
    steward_code text not null references department (code) on delete restrict,
    grantee_code text not null references department (code) on delete restrict,
    kind         text references terminal_kind (key) on delete restrict,
    granted_by   text not null,
    granted_at   timestamptz not null default now(),
    note         text,
    check (steward_code <> grantee_code),
    unique nulls not distinct (steward_code, grantee_code, kind)
);

create table change (
    id           bigint generated always as identity primary key,
    at           timestamptz not null default now(),
    actor        text not null,
    batch_id     uuid,
    action       text not null check (action in ('create', 'update', 'delete')),
    object_type  text not null,
    object_code  text not null,
    related_type text,
    related_code text,
    summary      text not null,
    before       jsonb,
    after        jsonb
);
create index change_object on change (object_type, object_code, at);
create index change_batch on change (batch_id) where batch_id is not null;
create index change_at on change (at);
