-- HJ 212 dead letters kept before the PW redaction read fields as the decoder does (`PW =…`, spaces around the
-- name) lose those PWs too; this SQL approximation covers ASCII spaces, the gateway covers the rest.
--
-- This migration once also moved the readings stored as Infinity/NaN to the dead letters and validated 0086's
-- constraint: on a large `reading` that scan held its locks, one transaction, for hours (partition creation,
-- then every insert, waiting behind it). Maintenance does that now, one partition per transaction
-- (ingest/store.py validate_finite, run by `ganzhi maintain` and hourly under `ganzhi up`; docs/deploy.md).
-- replaces checksum 6514d93726ed48decd619d651c116455eda6575fc553bb61792e35a2eac23f7b
set local lock_timeout = '5s';

update dead_letter
   set payload = decode(regexp_replace(encode(payload, 'escape'), '(^|;|##[0-9]{4})([[:space:]]*PW[[:space:]]*=)[^;]*',
                                       '\1\2***', 'g'), 'escape')
 where topic like 'hj212://%' and encode(payload, 'escape') ~ '(^|;|##[0-9]{4})[[:space:]]*PW[[:space:]]*=[^*]';
