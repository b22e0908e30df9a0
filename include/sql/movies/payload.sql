-- One row per candidate film work: its columns, its change key (greatest non-NULL change timestamp over
-- the film, its link rows, genres and persons) and independent per-film aggregates (parallel arrays) of genres and persons,
-- so the rows read grow with genres + persons, not with their product. Deterministic order (§4).
-- The aggregates join the candidates themselves, so the planner uses index lookups for a few candidates
-- and hash joins for a full load.
WITH candidates AS ({candidates}),
genres AS (
    SELECT
        gfw.film_work_id,
        array_agg(gn.id) AS genre_ids,
        array_agg(gn.name) AS genre_names,
        GREATEST(max(gfw.{genre_film_work_change}), max(gn.{genre_change})) AS change_key
    FROM candidates AS c
    JOIN {schema}.genre_film_work AS gfw ON gfw.film_work_id = c.id
    JOIN {schema}.genre AS gn ON gn.id = gfw.genre_id
    GROUP BY gfw.film_work_id
),
persons AS (
    SELECT
        pfw.film_work_id,
        array_agg(pn.id) AS person_ids,
        array_agg(pn.full_name) AS person_names,
        array_agg(pfw.role::text) AS person_roles,
        GREATEST(max(pfw.{person_film_work_change}), max(pn.{person_change})) AS change_key
    FROM candidates AS c
    JOIN {schema}.person_film_work AS pfw ON pfw.film_work_id = c.id
    JOIN {schema}.person AS pn ON pn.id = pfw.person_id
    GROUP BY pfw.film_work_id
)
SELECT
    fw.id,
    fw.title,
    fw.description,
    fw.rating,
    GREATEST(fw.{film_work_change}, g.change_key, p.change_key) AS change_key,
    g.genre_ids,
    g.genre_names,
    p.person_ids,
    p.person_names,
    p.person_roles
FROM candidates AS c
JOIN {schema}.film_work AS fw ON fw.id = c.id
LEFT JOIN genres AS g ON g.film_work_id = fw.id
LEFT JOIN persons AS p ON p.film_work_id = fw.id
ORDER BY 5 ASC NULLS FIRST, fw.id ASC
