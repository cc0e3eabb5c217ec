-- psql session recorded by capture.sh: simple-protocol queries of the kinds
-- pgmux's lexer and data path care about, \copy both ways, errors.
\set ON_ERROR_STOP 0
SELECT 1;
SELECT 1 AS a, 'two' AS b, 3.0::numeric AS c, now() IS NOT NULL AS d;
SELECT 1; SELECT 2; SELECT 'three';
SET application_name = 'capture-psql';
SET search_path TO public, pg_catalog;
SET LOCAL statement_timeout = '5s';
SET TIME ZONE 'UTC';
SHOW search_path;
RESET application_name;
BEGIN;
CREATE TABLE IF NOT EXISTS capture_t (id int PRIMARY KEY, v text, j jsonb, b bytea);
INSERT INTO capture_t VALUES (1, 'a', '{"k": [1, 2]}', '\x00ff'), (2, E'b\\n''quoted''', NULL, NULL)
	ON CONFLICT (id) DO UPDATE SET v = excluded.v;
SAVEPOINT s1;
INSERT INTO capture_t VALUES (1, 'dup');
ROLLBACK TO SAVEPOINT s1;
RELEASE s1;
COMMIT;
SELECT * FROM capture_t ORDER BY id;
SELECT $$dollar ' quoted; text$$, $tag$ nested $$ inside $tag$, U&'\0041', B'101', X'1F';
/* a block comment /* nested */ ; with a semicolon */ SELECT 'after comment';
-- errors
SELECT 1/0;
SELECT * FROM no_such_table;
SELEC typo;
BEGIN;
SELECT 1/0;
SELECT 'ignored in a failed transaction';
ROLLBACK;
PREPARE q1(int) AS SELECT v FROM capture_t WHERE id = $1;
EXECUTE q1(1);
DEALLOCATE q1;
DEALLOCATE ALL;
LISTEN capture_chan;
NOTIFY capture_chan, 'payload';
UNLISTEN *;
CREATE TEMP TABLE capture_tmp AS SELECT generate_series(1, 10) AS n;
SELECT count(*) FROM capture_tmp;
DISCARD ALL;
SELECT pg_advisory_lock(42);
SELECT pg_advisory_unlock_all();
SELECT set_config('work_mem', '8MB', false), set_config('work_mem', '4MB', true);
DO $$ BEGIN RAISE NOTICE 'notice from DO'; END $$;
CREATE OR REPLACE FUNCTION capture_f(x int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
	SELECT x + 1;
	SELECT x + 2;
END;
SELECT capture_f(1);
DECLARE c CURSOR WITH HOLD FOR SELECT 1;
CLOSE c;
\copy capture_t (id, v) FROM stdin
10	copied one
11	copied\ttwo
12	\N
\.
\copy capture_t TO stdout
\copy (SELECT id, v FROM capture_t WHERE id > 9) TO stdout WITH (FORMAT csv, HEADER)
\copy capture_t (id, v) FROM stdin WITH (FORMAT csv)
20,"csv, with comma"
20,duplicate key fails the copy
\.
SELECT repeat('x', 5000) AS big;
SELECT generate_series(1, 200) AS n;
DELETE FROM capture_t WHERE id >= 10;
VACUUM capture_t;
EXPLAIN SELECT * FROM capture_t WHERE id = 1;
