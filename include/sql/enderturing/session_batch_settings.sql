-- The sessions transaction waits, idle, while the changed sessions are transformed on the worker
-- (seconds per 100k sessions): a server-wide idle_in_transaction_session_timeout must not end it.
SET LOCAL idle_in_transaction_session_timeout = 0
