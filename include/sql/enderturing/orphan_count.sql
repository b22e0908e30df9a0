count(*) FILTER (WHERE s.{column} IS NOT NULL AND s.{column} NOT IN (SELECT p.id FROM {parent} AS p))
