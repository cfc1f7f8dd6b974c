-- Failed logins are counted per client address to throttle password spraying (registry/accounts.py).
create index change_failed_login_client on change (client, at) where action = 'login_failed';
