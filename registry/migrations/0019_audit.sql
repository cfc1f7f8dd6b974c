-- The change log becomes the one append-only audit log: ledger changes, grants, credential issues, alert steps,
-- fire verdicts, heat sources, accounts and tokens, logins and failed logins. Rows are only ever inserted: an
-- UPDATE or DELETE raises, whoever runs it; TRUNCATE raises unless run by a superuser (test clean-up).

alter table change drop constraint change_action_check;
alter table change add constraint change_action_check check (action in (
    'create', 'update', 'delete', 'issue', 'revoke', 'disable', 'enable', 'login', 'login_failed', 'logout',
    'acknowledge', 'resolve', 'close', 'comment', 'verdict', 'import'));
alter table change add column actor_id bigint;
alter table change add column actor_department text;
alter table change add column client text;
create index change_actor on change (actor, at);
create index change_actor_department on change (actor_department, id) where actor_department is not null;
create index change_action on change (action, id);

create function change_is_append_only() returns trigger language plpgsql as $$
begin
    if tg_op = 'TRUNCATE' and (select rolsuper from pg_roles where rolname = current_user) then
        return null;
    end if;
    raise exception 'the audit log is append-only: % is not allowed', tg_op
        using errcode = 'insufficient_privilege';
end
$$;

create trigger change_no_update_delete before update or delete on change
    for each row execute function change_is_append_only();
create trigger change_no_truncate before truncate on change
    for each statement execute function change_is_append_only();
