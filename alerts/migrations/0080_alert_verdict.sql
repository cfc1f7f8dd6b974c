-- The steward's verdict when acknowledging an analyser's drift alert (docs/rules.md, "Escalation"): 'sensor_ok'
-- (checked, it reads true: the bureau is paged at once) or 'fixing' (the escalation is shelved until the alert is
-- resolved, 24 h at most); and when it was acknowledged, which the shelving counts from.
alter table alert add column verdict text check (verdict in ('sensor_ok', 'fixing')),
                  add column acknowledged_at timestamptz;
