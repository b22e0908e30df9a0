-- Every film work id in uuid (= lowercase canonical string) order, for reconciliation (§6).
SELECT fw.id FROM {schema}.film_work AS fw ORDER BY fw.id
