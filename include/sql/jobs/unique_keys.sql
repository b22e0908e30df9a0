-- Column sets of the primary key and every non-partial unique index of a table.
SELECT array_agg(a.attname::text ORDER BY a.attname) AS columns
FROM pg_index i
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE i.indrelid = to_regclass(%(qualified)s) AND i.indisunique AND i.indpred IS NULL
GROUP BY i.indexrelid
