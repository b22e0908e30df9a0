-- Columns of the source tables, for change-column resolution (§1).
SELECT table_name, column_name
FROM information_schema.columns
WHERE table_schema = %(schema)s
  AND table_name = ANY(%(tables)s)
