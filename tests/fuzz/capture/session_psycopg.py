#!/usr/bin/python3
"""psycopg 3 sessions recorded by capture.sh: prepared statements
(prepare_threshold=0, so every query is a named server-side statement),
unprepared extended queries, executemany, pipeline mode, COPY in and out
(text and binary), server-side cursors, transactions with savepoints,
errors, LISTEN/NOTIFY and a cancel. Connection string from PGMUX_CAPTURE_DSN."""

import io
import os
import threading
import time

import psycopg

DSN = os.environ["PGMUX_CAPTURE_DSN"]


def prepared():
    with psycopg.connect(DSN, prepare_threshold=0, application_name="capture-psycopg") as conn:
        cur = conn.cursor()
        cur.execute("CREATE TABLE IF NOT EXISTS capture_pg (id int PRIMARY KEY, v text, n numeric)")
        cur.execute("SELECT %s::int + %s, %s::text", (1, 2, "x"))
        cur.fetchall()
        for i in range(3):
            cur.execute("SELECT v FROM capture_pg WHERE id = %s", (i,))
            cur.fetchall()
        cur.executemany(
            "INSERT INTO capture_pg VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
            [(i, "row %d" % i, i * 1.5) for i in range(20)],
        )
        conn.commit()
        cur.execute("SELECT %b::bytea, %s::jsonb, %s::date", (b"\x00\x01bin", '{"a": 1}', "2024-01-02"))
        cur.fetchone()
        cur.execute("SELECT * FROM capture_pg WHERE id = ANY(%s)", ([1, 2, 3],))
        cur.fetchall()
        try:
            cur.execute("SELECT 1/%s", (0,))
        except psycopg.Error:
            conn.rollback()
        with conn.transaction():
            cur.execute("UPDATE capture_pg SET v = %s WHERE id = %s", ("updated", 1))
            try:
                with conn.transaction():
                    cur.execute("INSERT INTO capture_pg VALUES (%s, %s, %s)", (1, "dup", 0))
            except psycopg.errors.UniqueViolation:
                pass
        with conn.cursor(name="capture_named") as ncur:
            ncur.itersize = 7
            ncur.execute("SELECT id, v FROM capture_pg ORDER BY id")
            for _ in ncur:
                pass
        conn.commit()
        # binary results
        with conn.cursor(binary=True) as bcur:
            bcur.execute("SELECT id, n FROM capture_pg WHERE id < %s", (5,))
            bcur.fetchall()


def pipeline():
    with psycopg.connect(DSN, prepare_threshold=0, application_name="capture-pipeline") as conn:
        with conn.pipeline() as p:
            cur = conn.cursor()
            for i in range(5):
                cur.execute("SELECT %s::int * 2", (i,))
            cur.execute("INSERT INTO capture_pg VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", (100, "p", 1))
            p.sync()
            cur.execute("SELECT count(*) FROM capture_pg")
        try:
            with conn.pipeline():
                cur = conn.cursor()
                cur.execute("SELECT 1")
                cur.execute("SELECT * FROM no_such_table_pipeline")
                cur.execute("SELECT 2")
        except psycopg.Error:
            pass
        conn.rollback()


def unprepared_and_copy():
    with psycopg.connect(DSN, prepare_threshold=None, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute("SELECT %s, %s", ("never", "prepared"))
        # client-side binding: a simple Query
        psycopg.ClientCursor(conn).execute("SET statement_timeout = %s", ("10s",))
        with cur.copy("COPY capture_pg (id, v, n) FROM STDIN") as copy:
            for i in range(200, 230):
                copy.write_row((i, "copied %d\twith tab" % i, i))
        buf = io.BytesIO()
        with cur.copy("COPY (SELECT * FROM capture_pg ORDER BY id) TO STDOUT") as copy:
            for data in copy:
                buf.write(data)
        with cur.copy("COPY capture_pg (id, v, n) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int4", "text", "numeric"])
            for i in range(300, 310):
                copy.write_row((i, "bin", i))
        with cur.copy("COPY (SELECT id, v FROM capture_pg WHERE id >= 300) TO STDOUT (FORMAT BINARY)") as copy:
            for _ in copy:
                pass
        try:
            with cur.copy("COPY capture_pg (id, v, n) FROM STDIN") as copy:
                copy.write_row((1, "duplicate", 0))
        except psycopg.Error:
            pass
        cur.execute("LISTEN capture_psycopg")
        # the NotificationResponse comes in the same reply
        cur.execute("NOTIFY capture_psycopg, 'hello'")
        cur.execute("DELETE FROM capture_pg WHERE id >= 100")


def cancel():
    with psycopg.connect(DSN) as conn:
        t = threading.Timer(0.3, conn.cancel)
        t.start()
        try:
            conn.execute("SELECT pg_sleep(3)")
        except psycopg.errors.QueryCanceled:
            pass
        t.join()


if __name__ == "__main__":
    prepared()
    pipeline()
    unprepared_and_copy()
    cancel()
    time.sleep(0.2)
