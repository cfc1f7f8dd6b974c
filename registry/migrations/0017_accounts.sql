-- Who uses the API: accounts (a person, or a bureau's system or service), their API tokens and their browser
-- sessions. Secrets are kept only as hashes: passwords as scrypt, tokens and session ids (256 random bits each)
-- as SHA-256.

create table account (
    id              bigint generated always as identity primary key,
    login           text not null unique check (login ~ '^[a-z0-9][a-z0-9._@-]{1,63}$'),
    name            text not null,
    kind            text not null default 'person' check (kind in ('person', 'service')),
    department_code text references department (code) on delete restrict,
    roles           text[] not null check (
                        cardinality(roles) > 0
                        and roles <@ array['viewer', 'operator', 'steward_admin', 'platform_admin', 'leading_group']),
    password_hash   text,
    created_at      timestamptz not null default now(),
    created_by      text not null,
    disabled_at     timestamptz,
    -- a department's roles need a department; the platform admin and the leading group may have none
    check (department_code is not null or roles <@ array['platform_admin', 'leading_group'])
);

create table api_token (
    id           bigint generated always as identity primary key,
    account_id   bigint not null references account (id) on delete restrict,
    name         text not null,
    secret_hash  text not null unique,
    created_at   timestamptz not null default now(),
    created_by   text not null,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
create index api_token_account on api_token (account_id);

create table account_session (
    id_hash    text primary key,
    account_id bigint not null references account (id) on delete restrict,
    csrf_token text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    ended_at   timestamptz
);
create index account_session_account on account_session (account_id);
