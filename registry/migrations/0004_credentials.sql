-- Broker credentials: one secret per pole or terminal, kept only as mosquitto's PBKDF2-SHA512 hash.

create table device_credential (
    code        text primary key check (code ~ '^[0-9]{8}[0-9A-Z]{7}$'),
    secret_hash text        not null check (secret_hash like '$7$%'),
    issued_at   timestamptz not null default now(),
    issued_by   text        not null
);
