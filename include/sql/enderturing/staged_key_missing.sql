count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE {key_match}))
