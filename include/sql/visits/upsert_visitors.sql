-- Recompute the metrics of every e-mail with a visit in load %(load_id)s from statistics (spec §5.3).
-- Nothing is incremented, so re-executions cannot double-count; fechaPrimeraVisita is set on insert only
-- and fechaUltimaVisita never moves backwards.
INSERT INTO {schema}.{visitor} AS v
  (email, fechaPrimeraVisita, fechaUltimaVisita, visitasTotales, visitasAnioActual, visitasMesActual)
SELECT s.email, min(s.fecha_open)::date, max(s.fecha_open)::date, count(*),
       count(*) FILTER (WHERE date_trunc('year', s.fecha_open) = date_trunc('year', %(r)s::timestamp)),
       count(*) FILTER (WHERE date_trunc('month', s.fecha_open) = date_trunc('month', %(r)s::timestamp))
FROM {schema}.{statistics} s
WHERE s.fecha_open IS NOT NULL
  AND s.email IN (SELECT email FROM {schema}.{statistics} WHERE load_id = %(load_id)s AND fecha_open IS NOT NULL)
GROUP BY s.email
ON CONFLICT (email) DO UPDATE SET
  fechaUltimaVisita = GREATEST(v.fechaUltimaVisita, EXCLUDED.fechaUltimaVisita),
  visitasTotales = EXCLUDED.visitasTotales,
  visitasAnioActual = EXCLUDED.visitasAnioActual,
  visitasMesActual = EXCLUDED.visitasMesActual;
