-- Ledger changes reach every ingest worker and HJ 212 gateway at once: each insert, update or delete of a
-- terminal or pole sends {"table", "op", "id", "code"} on the channel ganzhi_ledger (delivered at commit).
-- The workers drop that entry from their cache and look it up again when it next publishes.

create function notify_terminal_or_pole() returns trigger language plpgsql as $$
declare
    changed record;
begin
    if tg_op = 'DELETE' then
        changed := old;
    else
        changed := new;
    end if;
    perform pg_notify('ganzhi_ledger', json_build_object(
        'table', tg_table_name, 'op', tg_op, 'id', changed.id, 'code', changed.code)::text);
    return null;
end
$$;

create trigger terminal_notify after insert or update or delete on terminal
    for each row execute function notify_terminal_or_pole();
create trigger pole_notify after insert or update or delete on pole
    for each row execute function notify_terminal_or_pole();
