CREATE TEMP TABLE {replace_set} ON COMMIT DROP AS SELECT {parent} AS parent_key FROM {target} WITH NO DATA
