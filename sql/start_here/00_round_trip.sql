-- Lesson 00: one round trip through PostgreSQL before any queue exists.
-- A TEMPORARY table lives only in the session that made it, so nothing is left behind.

-- name: create_table
CREATE TEMPORARY TABLE greeting (
    id     integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    words  text NOT NULL,
    said   timestamptz NOT NULL DEFAULT now()
);

-- name: insert
INSERT INTO greeting (words) VALUES (%(words)s) RETURNING id;

-- name: listen
-- A session that LISTENs on a channel receives the NOTIFYs sent on it while it listens, once
-- the sender commits (not before, and never if it rolls back).
LISTEN start_here;

-- name: notify
-- pg_notify(channel, payload) is NOTIFY with values that can be parameters.
SELECT pg_notify('start_here', %(payload)s);

-- name: unlisten
UNLISTEN start_here;

-- name: read
SELECT id, words, said FROM greeting ORDER BY id;
