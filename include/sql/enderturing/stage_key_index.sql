-- Built once after the COPY (cheaper than keeping it during the COPY): a key staged twice fails
-- here, loudly, instead of being applied in an arbitrary order.
CREATE UNIQUE INDEX ON {stage} ({key})
