SELECT fw.id FROM {schema}.film_work AS fw
