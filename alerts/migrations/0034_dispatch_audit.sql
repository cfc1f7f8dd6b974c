-- The audit log takes the steps of dispatch tasks. (A later migration that redefines this list keeps them.)

alter table change drop constraint change_action_check;
alter table change add constraint change_action_check check (action in (
    'create', 'update', 'delete', 'issue', 'revoke', 'disable', 'enable', 'login', 'login_failed', 'logout',
    'acknowledge', 'resolve', 'close', 'comment', 'verdict', 'import',
    'assign', 'verify', 'rectify', 'reject', 'escalate'));
