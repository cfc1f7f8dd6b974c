-- Dead letters keep at most the first 64 KiB of a payload, with its full size and SHA-256; `suppressed`
-- counts the dead letters of the same source left out before this one (over its budget). HJ 212 frames
-- already kept lose their PW, and everything older than the retention (store.maintain) is deleted.

alter table dead_letter
    add column payload_size   integer,
    add column payload_sha256 bytea,
    add column suppressed     integer not null default 0;

update dead_letter
   set payload = decode(regexp_replace(encode(payload, 'escape'), 'PW=[^;&]*', 'PW=***', 'g'), 'escape')
 where topic like 'hj212://%';

update dead_letter
   set payload_size = length(payload), payload_sha256 = sha256(payload), payload = substring(payload for 65536);

alter table dead_letter
    alter column payload_size set not null,
    alter column payload_sha256 set not null;
