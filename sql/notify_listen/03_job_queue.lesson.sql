-- What lesson 03 runs to show NOTIFY's limits (never applied as a whole).

-- name: notify
-- pg_notify is NOTIFY with the channel and the payload as values, so they can be parameters.
SELECT pg_notify(%(channel)s, %(payload)s);
