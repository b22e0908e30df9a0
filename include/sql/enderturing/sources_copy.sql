COPY batch_sources (session_id, source_hash) FROM STDIN
