-- A straw fire is an alert too, for the environment bureau and the county: it belongs to a fire event,
-- not to one terminal (a satellite hotspot has none).

alter table alert alter column terminal_id drop not null;
alter table alert add column fire_event_id bigint references fire_event (id);
alter table alert add constraint alert_has_subject check (terminal_id is not null or fire_event_id is not null);
create unique index alert_one_fire on alert (fire_event_id) where fire_event_id is not null;
