-- Delivery of the alert feed to the bureaus' systems: endpoints per department (a webhook URL, or a phone
-- number for the SMS channel), one delivery row per (endpoint, feed entry), and how far the fan-out has read.

create table webhook (
    id              bigint generated always as identity primary key,
    department_code text        not null references department (code) on delete cascade,
    channel         text        not null default 'webhook' check (channel in ('webhook', 'sms')),
    target          text        not null,  -- the URL, or the phone number
    secret          text        not null,  -- HMAC-SHA256 key, shown once when the webhook is made
    families        text[],                -- null: every family
    severities      text[],
    division_code   text references division (code) on delete cascade,  -- and below
    created_by      text        not null,
    created_at      timestamptz not null default now(),
    paused_at       timestamptz,
    pause_reason    text,
    deleted_at      timestamptz
);
create index webhook_department on webhook (department_code) where deleted_at is null;

create table webhook_delivery (
    id          bigint generated always as identity primary key,
    webhook_id  bigint      not null references webhook (id) on delete cascade,
    feed_id     bigint      not null references alert_feed (id),
    replay      boolean     not null default false,
    status      text        not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
    attempts    integer     not null default 0,
    next_at     timestamptz not null default now(),
    first_failed_at timestamptz,
    last_status integer,
    last_error  text,
    created_at  timestamptz not null default now(),
    delivered_at timestamptz,
    latency_ms  double precision
);
-- Each endpoint's head: its oldest pending delivery, delivered before any later one (per-endpoint order).
create index webhook_delivery_pending on webhook_delivery (webhook_id, id) where status = 'pending';
create index webhook_delivery_log on webhook_delivery (webhook_id, id desc);
create unique index webhook_delivery_once on webhook_delivery (webhook_id, feed_id) where not replay;

-- The fan-out's position in alert_feed: moved in the transaction that writes the deliveries.
create table webhook_cursor (
    one     boolean primary key default true check (one),
    feed_id bigint  not null
);
insert into webhook_cursor (feed_id) values (0);

-- The SMS gateway's local double: what would have been sent (a deployment plugs a real gateway in).
create table sms_outbox (
    id         bigint generated always as identity primary key,
    phone      text        not null,
    body       text        not null,
    key        text        not null unique,  -- the idempotency key: a redelivery sends nothing twice
    sent_at    timestamptz not null default now()
);
