-- The default search path, as DBeaver reads it on connecting (seen in notes on DBeaver's connection queries, not checked against its source)
-- expect: "$user", public
SELECT reset_val FROM pg_settings WHERE name = 'search_path'
