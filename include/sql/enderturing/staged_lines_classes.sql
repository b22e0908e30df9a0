-- Each staged line's class, in line order: n = a new session's, c = another session to load (also
-- a line without a comparable session: the transform reports it), u = an unchanged session's.
COPY (
    SELECT CASE
               WHEN n.session_id IS NOT NULL THEN 'n'
               WHEN b.session_id IS NOT NULL OR own.session_id IS NULL THEN 'c'
               ELSE 'u'
           END
    FROM {lines} AS l
    LEFT JOIN new_sessions AS n ON n.session_id = l.session_id
    LEFT JOIN batch_sources AS b ON b.session_id = l.session_id
    LEFT JOIN (SELECT session_id FROM staged_sessions GROUP BY session_id HAVING count(*) = 1) AS own
      ON own.session_id = l.session_id
    ORDER BY l.line_no
) TO STDOUT
