-- Film works whose own row, link rows, genres or persons changed at or after the lower bound.
-- One selection per source so each can use the index on its change column; UNION de-duplicates.
SELECT fw.id FROM {schema}.film_work AS fw WHERE fw.{film_work_change} >= %(lower)s
UNION
SELECT gfw.film_work_id FROM {schema}.genre_film_work AS gfw WHERE gfw.{genre_film_work_change} >= %(lower)s
UNION
SELECT gfw.film_work_id
FROM {schema}.genre AS gn
JOIN {schema}.genre_film_work AS gfw ON gfw.genre_id = gn.id
WHERE gn.{genre_change} >= %(lower)s
UNION
SELECT pfw.film_work_id FROM {schema}.person_film_work AS pfw WHERE pfw.{person_film_work_change} >= %(lower)s
UNION
SELECT pfw.film_work_id
FROM {schema}.person AS pn
JOIN {schema}.person_film_work AS pfw ON pfw.person_id = pn.id
WHERE pn.{person_change} >= %(lower)s
