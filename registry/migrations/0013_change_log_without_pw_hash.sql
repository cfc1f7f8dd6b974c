-- The change log no longer holds anything derived from an HJ 212 PW (a truncated SHA-256 of six digits is
-- inverted in seconds): "pw" says only "set", or "changed" when an update replaced it.

update change
   set before = case when before ? 'pw_fingerprint'
                     then (before - 'pw_fingerprint')
                          || jsonb_build_object('pw', case when before ->> 'pw_fingerprint' is null then null
                                                           else 'set' end)
                     else before end,
       after  = case when after ? 'pw_fingerprint'
                     then (after - 'pw_fingerprint')
                          || jsonb_build_object('pw', case when after ->> 'pw_fingerprint' is null then null
                                                           when before ->> 'pw_fingerprint' <> after ->> 'pw_fingerprint'
                                                           then 'changed'
                                                           else 'set' end)
                     else after end
 where before ? 'pw_fingerprint' or after ? 'pw_fingerprint';
