"""Regression tests for defects found in review of the data path: each one
sends what triggered the defect and checks what a client sees."""

import threading
import time

import psycopg
import pytest

import pgwire
from test_pooling import table_name
from test_protocol import describe_msgs, direct


def start_extended_copy(pgmux, prefix):
    """pool_size=1, a fresh table, and a raw client that has sent
    P B E S for COPY FROM STDIN and received CopyInResponse."""
    mux = pgmux(pool_size=1)
    tbl = table_name(prefix)
    with mux.connect() as c:
        c.execute("CREATE TABLE %s (id int PRIMARY KEY)" % tbl)
    w, _ = mux.wire_login(timeout=10)
    w.send(pgwire.parse("", "COPY %s FROM STDIN" % tbl) + pgwire.bind() +
           pgwire.execute() + pgwire.sync())
    w.expect("1", "2", "G")
    return mux, tbl, w


def test_extended_copy_in_holds_server_until_sync(pg, pgmux):
    # P B E S, then CopyData, CopyDone, Sync (what libpq's PQexecParams does):
    # the Sync after Execute is read in copy mode and gets no ReadyForQuery;
    # the server must stay linked until the second Sync is answered.
    mux, tbl, w = start_extended_copy(pgmux, "xcopy")
    try:
        rows = b"".join(b"%d\n" % i for i in range(1000))
        w.send(pgwire.copy_data(rows) + pgwire.copy_done())
        time.sleep(0.3)  # a second client now competes for the only server
        other = {}

        def run_other():
            with mux.connect() as c2:
                other["n"] = c2.execute("SELECT count(*) FROM %s" % tbl).fetchone()[0]

        t = threading.Thread(target=run_other)
        t.start()
        time.sleep(0.3)
        w.send(pgwire.sync())
        res = w.read_until_ready(timeout=10)
        # CommandComplete for the copy, then exactly one ReadyForQuery
        assert describe_msgs(res.messages) == ["C", "Z"]
        assert pgwire.parse_command_complete(res.messages[0][1]) == "COPY 1000"
        assert res.status == "I"
        t.join(10)
        assert other.get("n") == 1000, "second client saw %r" % other
        r = w.check_query("SELECT count(*) FROM %s" % tbl)
        assert r.scalar() == "1000"
    finally:
        w.close()


def test_extended_copy_error_then_next_client(pg, pgmux):
    # the copy fails mid-stream; late CopyData and CopyDone are dropped, the
    # Sync ends it, and the next client gets a clean server
    mux, tbl, w = start_extended_copy(pgmux, "xcopyerr")
    try:
        w.send(pgwire.copy_data(b"1\n1\n"))
        for _ in range(20):
            w.try_send(pgwire.copy_data(b"5\n" * 1000))
        w.try_send(pgwire.copy_done() + pgwire.sync())
        res = w.read_until_ready(timeout=10)
        msgs = describe_msgs(res.messages)
        assert ("E", "23505") in msgs and msgs.count("Z") == 1
        with mux.connect() as c2:
            assert c2.execute("SELECT 42").fetchone()[0] == 42
        assert w.check_query("SELECT 7").scalar() == "7"
    finally:
        w.close()


def test_role_startup_parameter_refused(pgmux):
    mux = pgmux()
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(mux.dsn(options="-c role=postgres"))
    assert "role" in str(ei.value)
    with mux.connect() as c:  # still serving
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_bad_parameter_name_refused_and_no_server_leak(pg, pgmux):
    mux = pgmux(pool_size=1)
    for _ in range(3):
        with pytest.raises(psycopg.OperationalError) as ei:
            psycopg.connect(mux.dsn(options="--bad-name!=1"))
        assert "42704" in str(getattr(ei.value, "sqlstate", "")) or "parameter" in str(ei.value)
    with mux.connect() as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_session_mode_client_leaves_mid_transaction(pg, pgmux):
    # the next client must not inherit the previous one's session state
    mux = pgmux(pool_mode="session", pool_size=1)
    a = mux.connect(autocommit=True)
    a.execute("SET statement_timeout = '4321ms'")
    a.execute("BEGIN")
    a.execute("SELECT 1")
    a.close()
    with mux.connect() as b:
        assert b.execute("SHOW statement_timeout").fetchone()[0] != "4321ms"
        assert b.execute("SELECT txid_current_if_assigned()").fetchone()[0] is None
