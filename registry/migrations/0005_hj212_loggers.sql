-- HJ 212 data loggers (数采仪) log in by MN and PW: both belong to the terminal they report for.

alter table terminal add column mn text unique check (mn ~ '^[0-9A-Za-z]{1,24}$');
alter table terminal add column pw text check (pw ~ '^[!-~]{1,16}$');
alter table terminal add constraint terminal_mn_needs_hj212 check (mn is null or protocol = 'hj212');
