-- E-mails of load %(load_id)s with a visit older than their stored first visit (files out of order).
SELECT count(DISTINCT s.email)
FROM {schema}.{statistics} s
JOIN {schema}.{visitor} v ON v.email = s.email
WHERE s.load_id = %(load_id)s AND s.fecha_open::date < v.fechaPrimeraVisita;
