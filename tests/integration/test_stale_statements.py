"""Shared server statements that went stale, and statements nobody uses any
more (issue 7, section 4: "A shared server statement leaks another client's
error" and "DEALLOCATE leaves the server copy behind").

pgmux shares one server copy of a statement between every client that
prepares the same text. The rule these tests hold it to: a client never
gets an error from a copy it did not prepare itself that a fresh Parse
would not give, and the server keeps only the statements connected clients
still refer to, as a direct connection would.

The tests that reproduce a defect fail on the build before the fix
(checked against 51cc783); the psycopg sequence and the "stays" test pass on
both and guard the behaviour a direct connection has.
"""

import psycopg
import pytest

import pgwire

from harness import DB
from test_prepared import DirectPg


def drop_objects(conn, *names):
    for kind, name in names:
        conn.execute("DROP %s IF EXISTS %s CASCADE" % (kind, name))


def test_other_clients_copy_after_type_recreated(pgmux):
    """A prepares with a type and leaves; B drops and recreates the type and
    runs the same query: it must get its row, not A's XX000."""
    mux = pgmux(pool_size=1)
    with mux.connect() as a:
        drop_objects(a, ("TYPE", "tc_enum"))
        a.execute("CREATE TYPE tc_enum AS ENUM ('foo', 'bar')")
        assert a.execute("SELECT %s::tc_enum", ["foo"], prepare=True).fetchone() == ("foo",)
    with mux.connect() as b:
        b.execute("DROP TYPE tc_enum")
        b.execute("CREATE TYPE tc_enum AS ENUM ('foo', 'bar')")
        assert b.execute("SELECT %s::tc_enum", ["foo"], prepare=True).fetchone() == ("foo",)
        b.execute("DROP TYPE tc_enum")


def test_copy_from_rolled_back_transaction_not_reused(pg, pgmux):
    """A prepares a statement inside a transaction that creates a type and
    rolls back (raw protocol: psycopg would DEALLOCATE ALL after a rollback,
    hiding the problem), and stays connected, so its copy is no orphan. B
    creates the type again and prepares the same text: it must get a fresh
    statement, not A's copy whose parameter type no longer exists. B's type
    is made directly on PostgreSQL, so that only the rollback can tell pgmux
    that A's copy is stale."""
    mux = pgmux(pool_size=1)
    a, _ = mux.wire_login()
    with a:
        a.check_query("DROP TYPE IF EXISTS tc_enum_rb")
        a.check_query("BEGIN")
        a.check_query("CREATE TYPE tc_enum_rb AS ENUM ('foo', 'bar')")
        a.send(pgwire.parse("s1", "SELECT $1::tc_enum_rb", [0]) + pgwire.sync())
        a.expect("1", "Z")
        a.check_query("ROLLBACK")
        b, _ = mux.wire_login()
        with b:
            pg.sql("CREATE TYPE tc_enum_rb AS ENUM ('foo', 'bar')", dbname=DB)
            b.send(pgwire.parse("s2", "SELECT $1::tc_enum_rb", [0])
                   + pgwire.bind(stmt="s2", params=[b"foo"]) + pgwire.execute() + pgwire.sync())
            res = b.read_until_ready()
            assert not res.errors, res.errors
            assert res.types() == ["1", "2", "D", "C", "Z"]
    # known stale up front, not by a failed Bind and a retry
    assert not mux.log_lines(r"event=stale_plan")
    pg.sql("DROP TYPE tc_enum_rb", dbname=DB)


def test_ddl_pgmux_did_not_see_is_retried(pg, pgmux):
    """The type is recreated directly on PostgreSQL, where pgmux cannot see
    it: B's Bind of A's copy fails with XX000 cache lookup failed, and pgmux
    re-prepares the statement and retries once, invisibly."""
    mux = pgmux(pool_size=1)
    pg.sql("DROP TYPE IF EXISTS tc_enum_direct", dbname=DB)
    pg.sql("CREATE TYPE tc_enum_direct AS ENUM ('foo', 'bar')", dbname=DB)
    with mux.connect() as a:
        assert a.execute("SELECT %s::tc_enum_direct", ["foo"],
                         prepare=True).fetchone() == ("foo",)
        pg.sql("DROP TYPE tc_enum_direct", dbname=DB)
        pg.sql("CREATE TYPE tc_enum_direct AS ENUM ('foo', 'bar')", dbname=DB)
        mark = mux.log_mark()
        with mux.connect() as b:
            assert b.execute("SELECT %s::tc_enum_direct", ["foo"],
                             prepare=True).fetchone() == ("foo",)
        mux.wait_for_log(r"event=stale_plan_retry", since=mark)
    pg.sql("DROP TYPE tc_enum_direct", dbname=DB)


def psycopg_change_type(conn):
    """psycopg's own test_change_type (tests/test_prepared.py)."""
    conn.prepare_threshold = 0
    conn.execute("CREATE TYPE prepenum AS ENUM ('foo', 'bar', 'baz')")
    conn.execute("CREATE TABLE preptable(id integer, bar prepenum[])")
    conn.cursor().execute("INSERT INTO preptable (bar) VALUES (%(enum_col)s::prepenum[])",
                          {"enum_col": ["foo"]})
    conn.execute("DROP TABLE preptable")
    conn.execute("DROP TYPE prepenum")
    conn.execute("CREATE TYPE prepenum AS ENUM ('foo', 'bar', 'baz')")
    conn.execute("CREATE TABLE preptable(id integer, bar prepenum[])")
    conn.cursor().execute("INSERT INTO preptable (bar) VALUES (%(enum_col)s::prepenum[])",
                          {"enum_col": ["foo"]})
    n = conn.execute("select count(*) from pg_prepared_statements", prepare=False).fetchone()[0]
    assert n == 3
    conn.execute("DROP TABLE preptable")
    conn.execute("DROP TYPE prepenum")


def psycopg_change_type_savepoint(conn):
    """psycopg's own test_change_type_savepoint."""
    conn.prepare_threshold = 0
    with conn.transaction():
        for _ in range(3):
            with pytest.raises(ZeroDivisionError):
                with conn.transaction():
                    conn.execute("CREATE TYPE prepenum AS ENUM ('foo', 'bar', 'baz')")
                    conn.execute("CREATE TABLE preptable(id integer, bar prepenum[])")
                    conn.cursor().execute(
                        "INSERT INTO preptable (bar) VALUES (%(enum_col)s::prepenum[])",
                        {"enum_col": ["foo"]})
                    raise ZeroDivisionError()


@pytest.mark.parametrize("target", ["direct", "pgmux"])
def test_psycopg_change_type_then_savepoint(pg, pgmux, target):
    """psycopg's two tests in a row over a pool of one server, each on a new
    connection as psycopg's `conn` fixture makes it (autocommit off, closed
    without a commit: test_change_type's DDL is rolled back), compared with
    a direct connection. (The issue reproduced XX000 here with a psycopg
    whose list dumper left the parameter type to the server; Debian's 3.1
    sends text[], so this sequence guards the behaviour rather than
    reproducing the defect: the tests above do that.)"""
    t = DirectPg(pg) if target == "direct" else pgmux(pool_size=1)
    with t.connect() as c:
        drop_objects(c, ("TABLE", "preptable"), ("TYPE", "prepenum"))
    for test in (psycopg_change_type, psycopg_change_type_savepoint,
                 psycopg_change_type_savepoint, psycopg_change_type):
        c = t.connect(autocommit=False)
        try:
            test(c)
        finally:
            c.close()


@pytest.mark.parametrize("target", ["direct", "pgmux"])
def test_deallocated_statements_leave_the_server(pg, pgmux, target):
    """psycopg with room for 5 statements prepares 11 and DEALLOCATEs the
    oldest 6: the server it holds shows what a direct connection shows."""
    t = DirectPg(pg) if target == "direct" else pgmux(pool_size=1)
    with psycopg.connect(t.dsn(), autocommit=True, prepare_threshold=0) as conn:
        conn.prepared_max = 5
        for i in range(11):
            assert conn.execute("SELECT %d" % i).fetchone() == (i,)
        n = conn.execute("SELECT count(*) FROM pg_prepared_statements",
                         prepare=False).fetchone()[0]
    assert n == 5


def test_statements_of_departed_clients_are_closed(pg, pgmux):
    """A server keeps no copy of a statement no connected client refers to:
    a client that prepared 20 statements leaves, the next one finds none."""
    mux = pgmux(pool_size=1)
    with mux.connect(prepare_threshold=0) as a:
        for i in range(20):
            a.execute("SELECT %d AS departed" % i).fetchone()
        assert a.execute("SELECT count(*) FROM pg_prepared_statements",
                         prepare=False).fetchone()[0] == 20
    with mux.connect(prepare_threshold=None) as b:
        names = b.execute("SELECT name FROM pg_prepared_statements").fetchall()
    assert names == []


def test_statement_shared_by_a_connected_client_stays(pg, pgmux):
    """...but a copy another connected client still uses stays prepared."""
    mux = pgmux(pool_size=1)
    with mux.connect(prepare_threshold=0) as a, mux.connect(prepare_threshold=0) as b:
        a.execute("SELECT 1 AS shared").fetchone()
        b.execute("SELECT 1 AS shared").fetchone()
        b.close()
        n = a.execute("SELECT count(*) FROM pg_prepared_statements",
                      prepare=False).fetchone()[0]
        assert n == 1
        assert a.execute("SELECT 1 AS shared").fetchone() == (1,)
