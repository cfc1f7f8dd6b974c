-- What a rule's judge must remember beyond its episode to resume exactly (a water-quality analyser's latched doubt:
-- the terminal's first reading, doubted since, the escalation's note), so a restart or a window re-read takes it up
-- instead of re-reading the hours of readings that raised it.
alter table rule_state add column latch jsonb;
