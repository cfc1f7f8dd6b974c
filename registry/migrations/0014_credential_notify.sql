-- A device credential issued, replaced or removed reaches the broker sync at once (`ganzhi up` LISTENs on
-- ganzhi_ledger), in the same payload shape as the terminal and pole notifications. A truncate names no
-- device ("code": null): the sync then compares the whole ledger with the broker.

create function notify_device_credential() returns trigger
    language plpgsql as $$
declare
    row_code text;
begin
    if tg_level = 'ROW' then
        row_code := case when tg_op = 'DELETE' then old.code else new.code end;
    end if;
    perform pg_notify('ganzhi_ledger', json_build_object(
        'table', 'device_credential', 'op', lower(tg_op), 'id', null, 'code', row_code)::text);
    return null;
end
$$;

create trigger device_credential_notify
    after insert or update or delete on device_credential
    for each row execute function notify_device_credential();

create trigger device_credential_truncate_notify
    after truncate on device_credential
    for each statement execute function notify_device_credential();
