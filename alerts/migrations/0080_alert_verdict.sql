-- The steward's verdict when acknowledging an analyser's drift alert (docs/rules.md, "Escalation"): 'sensor_ok'
-- (checked, it reads true: the bureau is paged at once) or 'fixing' (the escalation is shelved until the readings
-- come back under the limit, 24 h after the acknowledgement at most); and when it was acknowledged, from which the
-- shelving counts. The verdict may be given on a drift alert already resolved (the creep stopped, the analyser
-- still at its offset): then only these two are set, the status stays.
alter table alert add column verdict text check (verdict in ('sensor_ok', 'fixing')),
                  add column acknowledged_at timestamptz;

-- Alerts acknowledged before this upgrade: when, from their history (an acknowledgement without a verdict is taken
-- as 'fixing' by the rules, so the verdict stays null).
update alert a set acknowledged_at = e.at
  from (select alert_id, max(at) as at from alert_event where action = 'acknowledge' group by alert_id) e
 where e.alert_id = a.id and a.acknowledged_at is null;
