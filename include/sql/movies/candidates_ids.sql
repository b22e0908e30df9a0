SELECT DISTINCT unnest(%(ids)s::uuid[]) AS id
