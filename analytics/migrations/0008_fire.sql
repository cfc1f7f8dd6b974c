-- Straw-burning fire detection: what each camera, thermal camera and satellite saw (fire_detection),
-- the annotated picture kept with it (fire_evidence), and the fires they are fused into (fire_event).

create table fire_event (
    id              bigint generated always as identity primary key,
    status          text             not null default 'open' check (status in ('open', 'closed')),
    first_seen      timestamptz      not null,
    last_seen       timestamptz      not null,
    lat             double precision,
    lon             double precision,
    accuracy_m      double precision,
    position_method text             not null default 'unknown'
                    check (position_method in ('triangulated', 'satellite', 'camera', 'unknown')),
    division_code   text references division (code),
    confidence      double precision not null check (confidence between 0 and 1),
    sources         text[]           not null default '{}',
    touched_at      timestamptz      not null default now(),
    closed_at       timestamptz
);
-- touched_at is when a detection last joined or extended the event (wall clock): a satellite point arrives
-- hours after its overpass and must not close its event on arrival.
create index fire_event_open on fire_event (touched_at) where status = 'open';
create index fire_event_list on fire_event (first_seen desc);

create table fire_detection (
    id            bigint generated always as identity primary key,
    event_id      bigint references fire_event (id),
    source        text             not null check (source in ('camera', 'thermal', 'satellite')),
    cue           text             not null check (cue in ('flame', 'smoke', 'hotspot')),
    track         text             not null,
    terminal_id   bigint references terminal (id) on delete set null,
    preset        integer,
    first_seen    timestamptz      not null,
    last_seen     timestamptz      not null,
    confidence    double precision not null check (confidence between 0 and 1),
    box           integer[],
    frame_size    integer[],
    camera_lat    double precision,
    camera_lon    double precision,
    bearing_deg   double precision,
    halfwidth_deg double precision,
    lat           double precision,
    lon           double precision,
    accuracy_m    double precision,
    position      text             not null check (position in ('ground', 'bearing', 'unknown', 'satellite')),
    division_code text references division (code),
    satellite     jsonb,
    unique (source, track)
);
create index fire_detection_event on fire_detection (event_id);

create table fire_evidence (
    detection_id bigint primary key references fire_detection (id) on delete cascade,
    captured_at  timestamptz not null,
    jpeg         bytea       not null
);
