-- Bring every visitor's year/month counters to reference date %(r)s, writing only changed rows
-- and scanning only statistics rows of R's year (spec §5.3 period roll-over).
WITH period AS (
  SELECT email,
         count(*) AS year_visits,
         count(*) FILTER (WHERE date_trunc('month', fecha_open) = date_trunc('month', %(r)s::timestamp)) AS month_visits
  FROM {schema}.{statistics}
  WHERE fecha_open >= date_trunc('year', %(r)s::timestamp)
    AND fecha_open < date_trunc('year', %(r)s::timestamp) + interval '1 year'
  GROUP BY email
),
target AS (
  SELECT v.email, coalesce(p.year_visits, 0) AS year_visits, coalesce(p.month_visits, 0) AS month_visits
  FROM {schema}.{visitor} v LEFT JOIN period p ON p.email = v.email
)
UPDATE {schema}.{visitor} v
SET visitasAnioActual = t.year_visits, visitasMesActual = t.month_visits
FROM target t
WHERE v.email = t.email
  AND (v.visitasAnioActual, v.visitasMesActual) IS DISTINCT FROM (t.year_visits, t.month_visits);
