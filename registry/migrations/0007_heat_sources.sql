-- Known static heat sources (power plants, factories, flares, boilers): satellite hotspots within their
-- radius are not straw fires.

create table heat_source (
    id            bigint generated always as identity primary key,
    name          text             not null unique check (length(name) between 1 and 128),
    kind          text             not null check (kind in ('power_plant', 'factory', 'flare', 'boiler', 'other')),
    lat           double precision not null check (lat between -90 and 90),
    lon           double precision not null check (lon between -180 and 180),
    radius_m      double precision not null default 1000 check (radius_m > 0 and radius_m <= 10000),
    division_code text references division (code),
    note          text,
    created_at    timestamptz      not null default now()
);
