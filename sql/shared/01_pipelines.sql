-- Step 01 (lesson 01): pipelines and the ordered processes they run.
-- Shared by both queue designs: the single-call lab builds the same tables.

-- One row per pipeline definition. pipe_order chains pipelines of one request (single-call
-- queue): order 2 starts when every order-1 pipeline of the request is done; 0 never chains.
CREATE TABLE pipelines (
    pipe_id                  serial PRIMARY KEY,
    pipe_name                varchar(100) NOT NULL,
    pipe_version             varchar(20)  NOT NULL,
    pipe_type                varchar(50),
    pipe_order               smallint     NOT NULL DEFAULT 1 CHECK (pipe_order >= 0),
    timestamp_minor_release  date         NOT NULL DEFAULT current_date,
    UNIQUE (pipe_name, pipe_version)
);

-- The steps of a pipeline. A process is identified by name AND version: one running
-- `assigner 1.0.0` serves every pipeline that asks for `assigner 1.0.0`, and no other.
-- The primary key means a process appears at most once in a pipeline (no A -> B -> A).
CREATE TABLE pipeline_processes (
    pipe_id                    integer      NOT NULL REFERENCES pipelines ON DELETE CASCADE,
    process_name               varchar(100) NOT NULL,
    process_version            varchar(20)  NOT NULL,
    process_order              smallint     NOT NULL CHECK (process_order >= 1),
    process_input_json_schema  jsonb,                          -- kept from the original, unused
    process_configuration      jsonb        NOT NULL DEFAULT '{}',  -- handed to that step's job
    PRIMARY KEY (pipe_id, process_name),
    -- Not in the original: two steps with one order made "the next process" ambiguous.
    UNIQUE (pipe_id, process_order)
);

-- Each process with the one before and after it IN ITS OWN PIPELINE.
-- The original used lag() OVER (ORDER BY process_order) without PARTITION BY pipe_id: it
-- numbered the steps of all pipelines as one list, so the "previous process" of a pipeline's
-- first step was some other pipeline's step. Lesson 01 shows it, then this fix.
CREATE VIEW process_neighbours AS
SELECT pipe_id,
       process_name,
       process_version,
       process_order,
       lag(process_name)     OVER steps AS previous_process_name,
       lag(process_version)  OVER steps AS previous_process_version,
       lead(process_name)    OVER steps AS next_process_name,
       lead(process_version) OVER steps AS next_process_version,
       lead(process_order)   OVER steps AS next_process_order
  FROM pipeline_processes
WINDOW steps AS (PARTITION BY pipe_id ORDER BY process_order);
