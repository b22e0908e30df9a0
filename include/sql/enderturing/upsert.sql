WITH upserted AS (
    INSERT INTO {target} AS t ({columns})
    SELECT {columns} FROM {stage} ORDER BY {key}
    ON CONFLICT ({key}) DO UPDATE
        SET ({non_key}) = ROW({excluded_non_key}), etl_loaded_at = now()
        WHERE ROW({target_non_key}) IS DISTINCT FROM ROW({excluded_non_key})
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM upserted
