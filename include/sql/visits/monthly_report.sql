-- Monthly report of files and rows (what `load_log_monthly` exposes), newest month first.
SELECT month, files_loaded, files_rejected, files_duplicate, failed, rows_read, rows_loaded, rows_rejected
FROM {schema}.{monthly}
ORDER BY month DESC;
