-- A sensor creeping away from the truth (``device:drift:{metric}``) states its direction as 'drift'.
alter table alert drop constraint alert_direction_check;
alter table alert add constraint alert_direction_check
    check (direction in ('above', 'below', 'falling', 'stuck', 'jump', 'drift', 'silent'));
