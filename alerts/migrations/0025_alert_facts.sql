-- What an alert states, field by field, stored when the rule raises it (the detail text is their summary):
-- the metric and its unit, the limit crossed and in which direction, the standard, and the class reached,
-- the discharge grade or the alarm level. A fire alert has none of them.
alter table alert add column metric text;
alter table alert add column unit text;
alter table alert add column limit_value double precision;
alter table alert add column direction text
    check (direction in ('above', 'below', 'falling', 'stuck', 'jump', 'silent'));
alter table alert add column standard text;
alter table alert add column grade text;

-- Alerts raised before: the metric is in the rule's key, or known by the rule.
update alert set metric = coalesce(
        substring(rule from '^(?:gb3838|gb18918|device:[a-z]+):(.+)$'),
        case rule when 'gas:methane' then 'methane_lel'
                  when 'gas:pressure_band' then 'gas_pressure'
                  when 'gas:pressure_drop' then 'gas_pressure'
                  when 'water:service_pressure' then 'water_pressure'
                  when 'water:night_flow' then 'water_flow'
                  when 'heating:indoor' then 'indoor_temp'
                  else substring(rule from '^heating:(.+)$') end)
 where fire_event_id is null;

create index alert_terminal_metric on alert (terminal_id, metric);
