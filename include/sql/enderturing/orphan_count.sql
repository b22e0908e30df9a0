count(*) FILTER (WHERE s.{column} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {parent} AS p WHERE p.id = s.{column}))
