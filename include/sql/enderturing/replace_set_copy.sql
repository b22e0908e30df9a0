COPY {replace_set} (parent_key) FROM STDIN
