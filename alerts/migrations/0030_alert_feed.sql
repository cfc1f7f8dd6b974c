-- The alert feed: a transactional outbox of every change to alerts, their history, incidents and fire events,
-- written by triggers in the transaction that makes the change (nothing written by the rule engine, the fire
-- worker or the API can change an alert without its feed entry, and an aborted change leaves none).
--
-- The id is the event id of the live stream and of webhook deliveries, so readers resume with `id > last`.
-- That needs ids to become visible in id order: the triggers are deferred to commit time and take one
-- transaction-level advisory lock before drawing an id, so a transaction that draws id n commits before any
-- other draws n + 1 (the lock is held only for the commit, not for the writer's whole transaction).

create table alert_feed (
    id              bigint generated always as identity primary key,
    at              timestamptz not null default now(),
    kind            text        not null check (kind in ('alert', 'alert_event', 'incident', 'fire_event')),
    action          text        not null,
    alert_id        bigint,
    incident_id     bigint,
    fire_event_id   bigint,
    family          text,
    bureau          text,
    department_code text,
    division_code   text,
    severity        text,
    payload         jsonb       not null
);
create index alert_feed_at on alert_feed (at);
create index alert_incident on alert (incident_id) where incident_id is not null;

create function alert_feed_append(p_kind text, p_action text, p_alert bigint, p_incident bigint, p_fire bigint,
                                  p_payload jsonb) returns void language plpgsql as $$
declare
    a alert%rowtype;
    feed_id bigint;
begin
    perform pg_advisory_xact_lock(hashtext('alert_feed'));
    if p_alert is not null then
        select * into a from alert where id = p_alert;
    elsif p_fire is not null then
        select * into a from alert where fire_event_id = p_fire;
    end if;
    insert into alert_feed (kind, action, alert_id, incident_id, fire_event_id, family, bureau, department_code,
                            division_code, severity, payload)
    values (p_kind, p_action, coalesce(p_alert, a.id), coalesce(p_incident, a.incident_id),
            coalesce(p_fire, a.fire_event_id), a.family, a.bureau, a.department_code,
            coalesce(a.division_code, p_payload ->> 'division_code'), a.severity, p_payload)
    returning id into feed_id;
    perform pg_notify('alert_feed', feed_id::text);
end $$;

create function alert_feed_on_alert() returns trigger language plpgsql as $$
begin
    perform alert_feed_append('alert', lower(tg_op), new.id, null, null, to_jsonb(new));
    return null;
end $$;

create function alert_feed_on_alert_event() returns trigger language plpgsql as $$
begin
    perform alert_feed_append('alert_event', new.action, new.alert_id, null, null, to_jsonb(new));
    return null;
end $$;

create function alert_feed_on_incident() returns trigger language plpgsql as $$
begin
    perform alert_feed_append('incident', lower(tg_op), null, new.id, null, to_jsonb(new));
    return null;
end $$;

create function alert_feed_on_fire_event() returns trigger language plpgsql as $$
begin
    perform alert_feed_append('fire_event', lower(tg_op), null, null, new.id, to_jsonb(new));
    return null;
end $$;

-- An open alert is updated by every evaluation that extends it (observed_end, worst_value, detail); only a
-- change of its state, severity, incident or routing is news to the bureaus.
create constraint trigger alert_feed_alert_insert after insert on alert
    deferrable initially deferred for each row execute function alert_feed_on_alert();
create constraint trigger alert_feed_alert_update after update on alert
    deferrable initially deferred for each row
    when (old.status is distinct from new.status or old.severity is distinct from new.severity
          or old.incident_id is distinct from new.incident_id or old.bureau is distinct from new.bureau
          or old.department_code is distinct from new.department_code
          or old.division_code is distinct from new.division_code)
    execute function alert_feed_on_alert();
create constraint trigger alert_feed_alert_event after insert on alert_event
    deferrable initially deferred for each row execute function alert_feed_on_alert_event();
create constraint trigger alert_feed_incident after insert or update on incident
    deferrable initially deferred for each row execute function alert_feed_on_incident();
-- A fire event is touched by every detection that joins it; only its opening, closing and verdict are news.
create constraint trigger alert_feed_fire_event_insert after insert on fire_event
    deferrable initially deferred for each row execute function alert_feed_on_fire_event();
create constraint trigger alert_feed_fire_event_update after update on fire_event
    deferrable initially deferred for each row
    when (old.status is distinct from new.status or old.verdict is distinct from new.verdict)
    execute function alert_feed_on_fire_event();
