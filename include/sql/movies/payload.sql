-- One row per candidate film work: its columns, its change key (greatest non-NULL change timestamp over
-- the film, its link rows, genres and persons) and independent per-film aggregates of genres and persons,
-- so the rows read grow with genres + persons, not with their product. Deterministic order (§4).
WITH candidates AS ({candidates})
SELECT
    fw.id,
    fw.title,
    fw.description,
    fw.rating,
    GREATEST(fw.{film_work_change}, g.change_key, p.change_key) AS change_key,
    COALESCE(g.genres, '[]'::json) AS genres,
    COALESCE(p.persons, '[]'::json) AS persons
FROM {schema}.film_work AS fw
JOIN candidates AS c ON c.id = fw.id
LEFT JOIN LATERAL (
    SELECT
        json_agg(json_build_object('id', gn.id, 'name', gn.name)) AS genres,
        GREATEST(max(gfw.{genre_film_work_change}), max(gn.{genre_change})) AS change_key
    FROM {schema}.genre_film_work AS gfw
    JOIN {schema}.genre AS gn ON gn.id = gfw.genre_id
    WHERE gfw.film_work_id = fw.id
) AS g ON true
LEFT JOIN LATERAL (
    SELECT
        json_agg(json_build_object('id', pn.id, 'name', pn.full_name, 'role', pfw.role::text)) AS persons,
        GREATEST(max(pfw.{person_film_work_change}), max(pn.{person_change})) AS change_key
    FROM {schema}.person_film_work AS pfw
    JOIN {schema}.person AS pn ON pn.id = pfw.person_id
    WHERE pfw.film_work_id = fw.id
) AS p ON true
ORDER BY 5 ASC NULLS FIRST, fw.id ASC
