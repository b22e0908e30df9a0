-- Records whose last update falls in the skipped part [start, floor) of a clamped changes window.
SELECT
    count(*) FILTER (WHERE rm.record_type_code = 'b') AS bib_records,
    count(*) FILTER (WHERE rm.record_type_code = 'i') AS item_records,
    min(rm.record_last_updated_gmt) AS oldest_skipped
FROM sierra_view.record_metadata AS rm
WHERE rm.record_type_code IN ('b', 'i')
  AND rm.record_last_updated_gmt >= %(start)s
  AND rm.record_last_updated_gmt < %(floor)s
