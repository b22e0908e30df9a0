-- One scan of the stage for all of the table's soft relationships, one count per column.
SELECT {missing} FROM {stage} AS s
