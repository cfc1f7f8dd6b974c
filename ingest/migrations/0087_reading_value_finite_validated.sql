-- The readings stored as Infinity, -Infinity or NaN before 0086 leave the store for the dead letters (with the
-- terminal's code and the row as JSON: nothing is lost, nothing meaningless is shown), then 0086's constraint is
-- validated. Both scan the store, under locks writers do not wait for (row exclusive, then share update
-- exclusive); rows written meanwhile are checked by the constraint already.
--
-- HJ 212 dead letters kept before the PW redaction read fields as the decoder does (`PW =…`, spaces around the
-- name) lose those PWs too; this SQL approximation covers ASCII spaces, the gateway covers the rest.
with moved as (
    delete from reading where value in ('Infinity', '-Infinity', 'NaN')
    returning terminal_id, metric, ts, value, flag
)
insert into dead_letter (topic, publisher, payload, payload_size, payload_sha256, reason)
select 'reading', t.code, p.payload, length(p.payload), sha256(p.payload),
       'stored with a value that is not a finite number before migration 0087; moved out of the store'
  from moved m
  left join terminal t on t.id = m.terminal_id
 cross join lateral (select convert_to(json_build_object('metric', m.metric, 'ts', m.ts, 'value', m.value::text,
                                                         'flag', m.flag)::text, 'UTF8') as payload) p;

alter table reading validate constraint reading_value_finite;

update dead_letter
   set payload = decode(regexp_replace(encode(payload, 'escape'), '(^|;|##[0-9]{4})([[:space:]]*PW[[:space:]]*=)[^;]*',
                                       '\1\2***', 'g'), 'escape')
 where topic like 'hj212://%' and encode(payload, 'escape') ~ '(^|;|##[0-9]{4})[[:space:]]*PW[[:space:]]*=[^*]';
