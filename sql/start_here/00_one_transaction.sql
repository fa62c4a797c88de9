-- Lesson 00: why a queue inside PostgreSQL at all. An order and the job that will process it
-- are written in ONE transaction: they are kept together or lost together.
-- TEMPORARY tables live only in the session that made them, so nothing is left behind.

-- name: create_tables
CREATE TEMPORARY TABLE shop_orders (
    order_id  integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer  text NOT NULL
);
CREATE TEMPORARY TABLE shop_jobs (
    job_id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id  integer NOT NULL REFERENCES shop_orders,  -- the order this job will process
    task      text NOT NULL
);

-- name: place_order
INSERT INTO shop_orders (customer) VALUES (%(customer)s) RETURNING order_id;

-- name: add_job
-- The job for the order: in a queue of its own (a separate service), this would be a second
-- system to write to, and a crash between the two writes would keep one and lose the other.
INSERT INTO shop_jobs (order_id, task) VALUES (%(order_id)s, %(task)s) RETURNING job_id;

-- name: counts
SELECT (SELECT count(*) FROM shop_orders) AS orders,
       (SELECT count(*) FROM shop_jobs)   AS jobs;

-- name: max_connections
-- Every worker of the kit's queues holds a connection; the server allows this many in all.
SELECT current_setting('max_connections')::integer AS max_connections;
