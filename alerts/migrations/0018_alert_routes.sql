-- Which departments receive which alerts, besides the steward of the alert's terminal: a route matches an
-- alert when each of its set columns matches (bureau, family, and division: the route's division or below it).

create table alert_route (
    id              bigint generated always as identity primary key,
    department_code text not null references department (code) on delete restrict,
    bureau          text check (bureau in ('environment', 'housing', 'steward')),
    family          text,
    division_code   text references division (code) on delete restrict,
    unique nulls not distinct (department_code, bureau, family, division_code)
);
create index alert_route_department on alert_route (department_code);
