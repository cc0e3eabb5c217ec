"""Queries and Parses too large to hold (over 1 MiB) stream to the server as
they arrive, with their text inspected on the way (issue 7, section 4: "One
big message takes the process's memory"). What pgmux tracks for a small
message it must still track for a large one: SETs, pins, session_pinning =
deny, named and unnamed prepared statements. The memory and latency figures
for 200 MB messages are in test_defects.py; these use a few MiB."""

import pytest

import pgwire
from harness import DB

FILLER = 3 * 1024 * 1024  # bytes of padding: well past the 1 MiB streaming threshold


def pad(n=FILLER):
    return "x" * n


def big_select():
    return "SELECT length('%s')" % pad()


def test_large_query_runs_and_its_set_is_tracked(pgmux):
    """A 3 MiB multi-statement Query: its SET (after the padding) is kept
    for the client's later transactions on another server."""
    mux = pgmux(pool_size=2)
    c, _ = mux.wire_login()
    with c:
        res = c.check_query(big_select() + "; SET application_name = 'after_padding'")
        assert res.types()[-1] == "Z"
        rows = [pgwire.parse_data_row(p) for t, p in res.messages if t == "D"]
        assert rows == [[str(FILLER)]]
        # another client holds the server it used, so the next query runs elsewhere
        other, _ = mux.wire_login()
        with other:
            other.check_query("BEGIN")
            other.check_query("SELECT 1")
            assert c.check_query("SHOW application_name").scalar() == "after_padding"
            other.check_query("COMMIT")


def test_large_query_pin_is_seen(pgmux):
    """A pinning statement past the head of a large Query pins the client
    (the lock call is 3 MiB into the text)."""
    mux = pgmux(pool_size=2)
    c, _ = mux.wire_login()
    with c:
        mark = mux.log_mark()
        c.check_query("SELECT length('%s'), pg_advisory_lock(4242)" % pad())
        mux.wait_for_log(r"event=session_pinned reason=advisory_lock", since=mark)
        pid = c.check_query("SELECT pg_backend_pid()").scalar()
        assert c.check_query("SELECT pg_backend_pid()").scalar() == pid
        c.check_query("SELECT pg_advisory_unlock_all()")


@pytest.mark.parametrize("where", ["head", "tail"])
def test_large_query_refused_under_deny(pg, pgmux, where):
    """session_pinning = deny refuses a large Query that would pin, wherever
    the statement is, with 0A000, and runs none of it."""
    mux = pgmux(pool_size=1, session_pinning="deny")
    c, _ = mux.wire_login()
    with c:
        c.check_query("CREATE TABLE IF NOT EXISTS large_deny (a int)")
        c.check_query("TRUNCATE large_deny")
        listen = "LISTEN large_deny_channel"
        body = "INSERT INTO large_deny SELECT length('%s')" % pad()
        sql = listen + "; " + body if where == "head" else body + "; " + listen
        res = c.simple_query(sql)
        assert res.errors and res.errors[0]["C"] == "0A000", res.errors
        assert "listen" in res.errors[0]["M"]
        assert c.check_query("SELECT count(*) FROM large_deny").scalar() == "0"
        c.check_query("DROP TABLE large_deny")


def test_large_unnamed_parse(pgmux):
    """A 3 MiB unnamed Parse, then Bind/Execute/Sync: the answer is right and
    the client keeps multiplexing."""
    mux = pgmux(pool_size=1)
    c, _ = mux.wire_login()
    with c:
        c.send(pgwire.parse("", big_select()) + pgwire.bind() + pgwire.execute()
               + pgwire.sync())
        res = c.read_until_ready()
        assert not res.errors, res.errors
        assert res.types() == ["1", "2", "D", "C", "Z"]
        assert pgwire.parse_data_row(res.messages[2][1]) == [str(FILLER)]
        assert not mux.log_lines(r"event=session_pinned")


def test_large_named_parse_pins_until_closed(pg, pgmux):
    """A named Parse too large to keep a copy of pins its client to the one
    server that has it (reason large_statement); Binds work; closing it
    unpins."""
    mux = pgmux(pool_size=2)
    c, _ = mux.wire_login()
    with c:
        c.send(pgwire.parse("big", big_select()) + pgwire.sync())
        c.expect("1", "Z")
        mux.wait_for_log(r"event=session_pinned reason=large_statement")
        for _ in range(3):
            c.send(pgwire.bind(stmt="big") + pgwire.execute() + pgwire.sync())
            res = c.read_until_ready()
            assert not res.errors, res.errors
            assert pgwire.parse_data_row(res.messages[1][1]) == [str(FILLER)]
        # a second Parse of the same name is refused as PostgreSQL would
        c.send(pgwire.parse("big", big_select()) + pgwire.sync())
        res = c.read_until_ready()
        assert res.errors and res.errors[0]["C"] == "42P05"
        c.send(pgwire.close("S", "big") + pgwire.sync())
        c.expect("3", "Z")
        c.check_query("SELECT 1")
        mux.wait_for_log(r"event=session_unpinned")


def test_large_named_parse_refused_under_deny(pgmux):
    mux = pgmux(pool_size=1, session_pinning="deny")
    c, _ = mux.wire_login()
    with c:
        c.send(pgwire.parse("big", big_select()) + pgwire.sync())
        res = c.read_until_ready()
        assert res.errors and res.errors[0]["C"] == "0A000"
        assert "large_statement" in res.errors[0]["M"]
        assert c.check_query("SELECT 2").scalar() == "2"


def test_large_unnamed_parse_that_pins_refused_at_bind_under_deny(pgmux):
    mux = pgmux(pool_size=1, session_pinning="deny")
    c, _ = mux.wire_login()
    with c:
        c.send(pgwire.parse("", "SELECT length('%s'), pg_advisory_lock(1)" % pad())
               + pgwire.bind() + pgwire.execute() + pgwire.sync())
        res = c.read_until_ready()
        assert res.errors and res.errors[0]["C"] == "0A000", res.types()
        assert c.check_query("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                             ).scalar() == "0"


def test_large_query_without_terminator_closes_client_not_server(pg, pgmux):
    """A large Query whose last byte is not its terminator: 08P01 for the
    client, and the server goes back to the pool (it rejected the message)."""
    mux = pgmux(pool_size=1)
    c, _ = mux.wire_login()
    with c:
        c.check_query("SELECT 1")
        pid = pg.backends()[0][0]
        text = big_select().encode() + b"xy"  # no NUL at the end
        c.send(pgwire.msg("Q", text))
        msgs, closed = c.read_until_close(timeout=10)
        assert closed
        errs = pgwire.errors_in(msgs)
        assert errs and errs[-1]["C"] == "08P01"
    mux.assert_serves()
    assert [r[0] for r in pg.backends()] == [pid]
