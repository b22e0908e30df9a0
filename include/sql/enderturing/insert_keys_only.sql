WITH inserted AS (
    INSERT INTO {target} ({columns})
    SELECT {columns} FROM {stage} ORDER BY {key}
    ON CONFLICT ({key}) DO NOTHING
    RETURNING 1
)
SELECT count(*), 0 FROM inserted
