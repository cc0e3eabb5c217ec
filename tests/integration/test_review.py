"""Regression tests for defects found in review of the data path: each one
sends what triggered the defect and checks what a client sees."""

import socket
import threading
import time

import psycopg
import pytest

import pgwire
from harness import DB
from test_pooling import quiet_pool, table_name
from test_prepared import (B, C, D, E, P, Q, S, DirectPg, _assert_same, _ddl_table,
                           _terminate_app_backends, error_codes, run_step, summarize)
from test_protocol import describe_msgs
from test_session_state import _query_fresh_client, pid_of, pinned_client


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


# --------------------------------------------------------------------------
# Review round 2: statement effects, pins, stale plans, unnamed statements,
# replayed settings. Most tests run the same script against PostgreSQL
# directly first (the reference) and then through pgmux with pool_size=1,
# where every change of client relinks the only server connection and
# ("kill",) steps force a new one.

KILL = "kill"


def play(t, script, params=None, kill=None):
    """Run SCRIPT against T (PostgreSQL directly or a pgmux): (client, bytes)
    steps, each read up to its ReadyForQuery; a client logs in at its first
    step, with PARAMS[client] as startup parameters. (KILL,) steps call KILL
    (a new server connection through pgmux; nothing directly). Returns
    [(client, summarized replies)]. A client disconnected fails the test."""
    conns, out = {}, []
    try:
        for i, step in enumerate(script):
            who = step[0]
            if who == KILL:
                if kill:
                    kill()
                continue
            try:
                if who not in conns:
                    conns[who], _ = t.wire_login(params=(params or {}).get(who), timeout=10)
                out.append((who, run_step(conns[who], step[1], timeout=10)))
            except (pgwire.ConnectionClosed, pgwire.PgError, OSError) as e:
                raise AssertionError("step %d (%s, %r): %r; the steps before gave %r"
                                     % (i, who, step[1][:100], e, out[-3:])) from e
    finally:
        for c in conns.values():
            c.close()
    return out


def new_server(pg):
    def kill():
        _terminate_app_backends(pg)
        time.sleep(0.05)
    return kill


def assert_like_direct(pg, pgmux, script, params=None, **settings):
    """SCRIPT directly, then through pgmux(pool_size=1); the replies must be
    the same, step by step. Returns the direct replies."""
    want = play(DirectPg(pg), script, params)
    quiet_pool(pg)
    mux = pgmux(pool_size=1, **settings)
    got = play(mux, script, params, kill=new_server(pg))
    _assert_same(got, want)
    return want


def rows_of(summary):
    return [m[1] for m in summary if m[0] == "D"]


def test_set_prepared_in_rolled_back_transaction_then_executed(pg, pgmux):
    """A SET prepared (named Parse) inside a transaction that rolls back and
    executed later with Bind/Execute takes effect for its client only; a SET
    that is Parsed but never executed takes no effect at all."""
    script = [
        ("a", Q("BEGIN")),
        ("a", P("set_rb", "SET work_mem = '1111kB'") + S()),
        ("a", Q("ROLLBACK")),
        ("b", Q("SHOW work_mem")),
        ("a", B("", "set_rb") + E() + S()),
        ("b", Q("SHOW work_mem")),
        ("a", Q("SHOW work_mem")),
        ("b", Q("SHOW work_mem")),
        (KILL,),
        ("a", Q("SHOW work_mem")),
        ("b", Q("SHOW work_mem")),
        # Parse only: nothing runs
        ("c", P("set_never", "SET lock_timeout = '3333ms'") + S()),
        ("c", Q("SHOW lock_timeout")),
        ("b", Q("SHOW lock_timeout")),
        ("c", Q("SHOW lock_timeout")),
        (KILL,),
        ("c", Q("SHOW lock_timeout")),
    ]
    want = assert_like_direct(pg, pgmux, script)
    shows = [(who, rows_of(r)[0][0]) for who, r in want if rows_of(r)]
    assert shows == [("b", "4MB"), ("b", "4MB"), ("a", "1111kB"), ("b", "4MB"),
                     ("a", "1111kB"), ("b", "4MB"),
                     ("c", "0"), ("b", "0"), ("c", "0"), ("c", "0")], shows


def test_parse_of_unlock_all_keeps_the_pin(pg, pgmux):
    """A client pinned by a session advisory lock that only prepares
    `SELECT pg_advisory_unlock_all()` (Parse + Describe, as asyncpg does
    before executing) still holds the lock: it stays pinned, so no other
    client gets its server or sees the lock. Executing the statement does
    unpin."""
    key = 8413
    held = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d "
            "AND pid = pg_backend_pid()" % key)
    mux = pgmux(pool_size=1, connection_borrow_timeout=1)
    a = pinned_client(mux, ["SELECT pg_advisory_lock(%d)" % key], "advisory_lock")
    with a:
        pid_a = pid_of(a)
        res = run_step(a, P("unlock", "SELECT pg_advisory_unlock_all()") + D("S", "unlock") + S())
        assert error_codes(res) == [] and res[0] == ("1",) and res[-1] == ("Z", "I"), res
        for _ in range(2):
            msgs = _query_fresh_client(mux, "app", held)
            assert ("D", ("1",)) not in summarize(msgs), \
                "another client's server holds the pinned client's lock: %r" % summarize(msgs)
            assert [e.get("C") for e in pgwire.errors_in(msgs)] == ["53300"], summarize(msgs)
        assert pg.sql("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
                      (key,)) == [(pid_a,)]
        assert pid_of(a) == pid_a
        # running it releases the lock and the pin
        mark = mux.log_mark()
        res = run_step(a, B("", "unlock") + E() + S())
        assert error_codes(res) == [], res
        mux.wait_for_log(r"\bevent=session_unpinned\b", since=mark)
        msgs = _query_fresh_client(mux, "app", held)
        assert summarize(msgs)[-3:] == [("D", ("0",)), ("C", "SELECT 1"), ("Z", "I")], \
            summarize(msgs)


def _stale_plan_setup(pg, w, tbl, extra=()):
    """Prepare s1 = SELECT * FROM TBL (and EXTRA) on W, run it once, then
    change its result type with ALTER TABLE ... ADD COLUMN."""
    parses = P("s1", "SELECT * FROM %s" % tbl) + b"".join(extra)
    assert run_step(w, parses + S()) == [("1",)] * (1 + len(extra)) + [("Z", "I")]
    assert rows_of(run_step(w, B("", "s1") + E() + S())) == [("1", "one")]
    pg.sql("ALTER TABLE %s ADD COLUMN extra int DEFAULT 7" % tbl, dbname=DB)


def test_stale_plan_while_client_streams_a_large_bind(pg, pgmux):
    """Bind/Execute/Sync of a statement whose result type changed (0A000),
    followed in the same write by the first 200 kB of a 1 MB Bind: the rest
    of that Bind arrives later, and the connection must go on normally."""
    big = B("", "s2", [b"x" * 1_000_000])
    second = P("s2", "SELECT length($1::text)")

    def run(t):
        tbl = _ddl_table(pg)
        try:
            w, _ = t.wire_login(timeout=10)
            with w:
                _stale_plan_setup(pg, w, tbl, [second])
                w.send(B("", "s1") + E() + S() + big[:200000])
                first = summarize(w.read_until_ready(timeout=10).messages)
                time.sleep(0.3)
                w.send(big[200000:] + E() + S())
                rest = summarize(w.read_until_ready(timeout=10).messages)
                after = w.check_query("SELECT 'after'").scalar()
                return first, rest, after
        finally:
            pg.sql("DROP TABLE %s" % tbl, dbname=DB)

    want = run(DirectPg(pg))
    assert want == ([("E", "0A000"), ("Z", "I")],
                    [("2",), ("D", ("1000000",)), ("C", "SELECT 1"), ("Z", "I")], "after"), want
    mux = pgmux(pool_size=1)
    try:
        first, rest, after = run(mux)
    except (pgwire.ConnectionClosed, OSError) as e:
        raise AssertionError("pgmux broke the connection: %r" % e) from e
    # pgmux may also have retried it transparently with the new column
    assert first in (want[0], [("2",), ("D", ("1", "one", "7")), ("C", "SELECT 1"),
                                ("Z", "I")]), first
    assert (rest, after) == want[1:]


def test_stale_plan_error_without_retry_releases_the_server(pg, pgmux):
    """After a 0A000 that pgmux does not retry (Bind/Execute/Sync, no
    Describe), the idle client does not keep the only server: another
    client's query runs within a second, and nothing stray reaches the
    first client."""
    mux = pgmux(pool_size=1)
    tbl = _ddl_table(pg)
    try:
        a, _ = mux.wire_login()
        b, _ = mux.wire_login()
        with a, b:
            _stale_plan_setup(pg, a, tbl)
            res = run_step(a, B("", "s1") + E() + S())
            assert error_codes(res) == ["0A000"] and res[-1] == ("Z", "I"), res
            t0 = time.monotonic()
            b.send(Q("SELECT 'b'"))
            try:
                got = b.read_until_ready(timeout=3)
            except socket.timeout:
                raise AssertionError("the idle client that got 0A000 still holds the only "
                                     "server: no reply to another client within 3 s")
            elapsed = time.monotonic() - t0
            assert got.rows == [["b"]] and not got.errors, got.messages
            assert elapsed < 1.0, "another client waited %.1f s for the server" % elapsed
            assert a.pending(0.3) == []
            # the client goes on: pgmux prepares the statement again
            assert run_step(a, B("", "s1") + E() + S()) == \
                [("2",), ("D", ("1", "one", "7")), ("C", "SELECT 1"), ("Z", "I")]
            assert a.check_query("SELECT 'a'").scalar() == "a"
    finally:
        pg.sql("DROP TABLE %s" % tbl, dbname=DB)


def test_skipped_eviction_close_does_not_grow_server_statements(pg, pgmux):
    """max_prepared_statements = 2: pipelines in which an error makes the
    backend skip the rest (so also the Close pgmux adds to evict a
    statement) must not let statements pile up on the server; and every
    statement answers as it does directly."""
    def run(t, count):
        w, _ = t.wire_login()
        out, counts = [], []
        with w:
            for i in range(10):
                out.append(run_step(w, P("ok%d" % i, "SELECT %d" % i) + S()))
                out.append(run_step(w, P("", "SELECT 1/0") + B() + E()
                                    + P("f%d" % i, "SELECT 100 + %d" % i) + S()))
                if count:
                    counts.append(int(w.check_query(
                        "SELECT count(*) FROM pg_prepared_statements").scalar()))
            for i in range(10):
                out.append(run_step(w, B("", "ok%d" % i) + E() + S()))
                out.append(run_step(w, B("", "f%d" % i) + E() + S()))
        return out, counts

    want, _ = run(DirectPg(pg), False)
    assert error_codes(want[1]) == ["22012"] and rows_of(want[20]) == [("0",)]
    assert error_codes(want[21]) == ["26000"]
    mux = pgmux(pool_size=1, max_prepared_statements=2)
    got, counts = run(mux, True)
    assert max(counts) <= 4, \
        "statements on the server after each pipeline: %r (max_prepared_statements = 2)" % counts
    _assert_same(got, want)


def test_unnamed_statement_of_another_client_is_not_bindable(pg, pgmux):
    """A client that never parsed an unnamed statement gets 26000 from
    Bind(''), whatever another client left on the same server: an unnamed
    statement, one it closed, or one whose Close the backend skipped after
    an error."""
    secret = "SELECT 'A-secret' AS s, 1 / $1::int"
    variants = [
        P("", secret, [23]) + B("", "", ["0"]) + E() + C("S", "") + S(),   # 22012, Close skipped
        P("", secret, [23]) + S(),                                         # left on the server
        P("", secret, [23]) + B("", "", ["1"]) + E() + C("S", "") + S(),  # closed
        P("", secret, [23]) + B("", "", ["0"]) + E() + S(),                # error, no Close
    ]
    script = []
    for i, v in enumerate(variants):
        a, b = "a%d" % i, "b%d" % i
        script += [(a, v), (b, B("", "", ["1"]) + E() + S()), (b, D("S", "") + S()),
                   (a, Q("SELECT 'a'")), (b, B("", "", ["1"]) + E() + S())]
    want = assert_like_direct(pg, pgmux, script)
    for who, r in want:
        if who.startswith("b"):
            assert error_codes(r) == ["26000"], (who, r)


def test_replayed_settings_survive_a_new_server(pg, pgmux):
    """Settings whose SET syntax is unusual, and one that changes how the
    next SQL text is read, replayed on a new server connection and on a
    relink: SET TIME ZONE INTERVAL, SET SESSION CHARACTERISTICS (two in
    separate and in one Query), standard_conforming_strings = off followed
    on the same server by a client whose application_name ends in a
    backslash. Every value is what a direct connection shows and nobody is
    disconnected."""
    chars = ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
             "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    show_chars = Q("SELECT current_setting('default_transaction_read_only'), "
                   "current_setting('default_transaction_isolation')")
    script = [
        ("tz", Q("SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE")),
        ("ch1", Q(chars[0])),
        ("ch1", Q(chars[1])),
        ("ch2", Q("; ".join(chars))),
        ("scs", Q("SET standard_conforming_strings = off")),
        ("tz", Q("SHOW TimeZone")),
        ("ch1", show_chars),
        ("ch2", show_chars),
        (KILL,),
        ("scs", Q("SHOW standard_conforming_strings")),
        ("bs", Q("SHOW application_name")),
        (KILL,),
        ("tz", Q("SHOW TimeZone")),
        (KILL,),
        ("ch1", show_chars),
        (KILL,),
        ("ch2", show_chars),
        (KILL,),
        ("scs", Q("SELECT 'a\\'b'")),
        ("bs", Q("SHOW application_name")),
        ("scs", Q("SHOW standard_conforming_strings")),
        ("tz", Q("SELECT '2024-01-01 00:00:00+00'::timestamptz::text")),
    ]
    want = assert_like_direct(pg, pgmux, script, params={"bs": {"application_name": "dir\\"}})
    got = {}
    for who, r in want:
        got.setdefault(who, []).extend(rows_of(r))
    assert got["tz"][0] == got["tz"][1] and got["tz"][2] == ("2024-01-01 02:00:00+02",), got
    assert got["ch1"] == got["ch2"] == [("on", "serializable")] * 2, got
    assert got["bs"] == [("dir\\",)] * 2 and got["scs"][-1] == ("off",), got


def test_failed_discard_all_keeps_prepared_statements(pg, pgmux):
    """DISCARD ALL inside a transaction fails (25001) and discards nothing:
    the client's named statement still works after ROLLBACK, on the same
    server and on a new one."""
    script = [
        ("a", P("s1", "SELECT 42") + S()),
        ("a", Q("BEGIN")),
        ("a", Q("DISCARD ALL")),
        ("a", Q("ROLLBACK")),
        ("a", B("", "s1") + E() + S()),
        (KILL,),
        ("a", B("", "s1") + E() + S()),
        ("a", Q("BEGIN")),
        ("a", P("", "DISCARD ALL") + B() + E() + S()),
        ("a", Q("ROLLBACK")),
        (KILL,),
        ("a", B("", "s1") + E() + S()),
    ]
    want = assert_like_direct(pg, pgmux, script)
    assert error_codes(want[2][1]) == ["25001"] and error_codes(want[7][1]) == ["25001"]
    assert [rows_of(want[i][1]) for i in (4, 5, 9)] == [[("42",)]] * 3


def test_rollback_to_savepoint_and_commit_in_one_query_keeps_earlier_set(pg, pgmux):
    """`ROLLBACK TO SAVEPOINT sp; COMMIT` in one Query undoes only what came
    after the savepoint: the SET made before it sticks, after a relink and on
    a new server too."""
    script = [
        ("a", Q("BEGIN")),
        ("a", Q("SET work_mem = '7MB'")),
        ("a", Q("SAVEPOINT sp")),
        ("a", Q("SET lock_timeout = '4321ms'")),
        ("a", Q("ROLLBACK TO SAVEPOINT sp; COMMIT")),
        ("a", Q("SHOW work_mem")),
        ("b", Q("SELECT 1")),
        ("a", Q("SELECT current_setting('work_mem'), current_setting('lock_timeout')")),
        (KILL,),
        ("a", Q("SELECT current_setting('work_mem'), current_setting('lock_timeout')")),
        ("b", Q("SHOW work_mem")),
    ]
    want = assert_like_direct(pg, pgmux, script)
    assert [rows_of(r) for _, r in want[5:]] == [
        [("7MB",)], [("1",)], [("7MB", "0")], [("7MB", "0")], [("4MB",)]], want


def test_statement_name_cut_inside_a_multibyte_character(pg, pgmux):
    """A 64-byte statement name whose last character is two bytes: Bind,
    Describe and Close of the unknown name answer as PostgreSQL does (26000,
    not 22021), and Parse/Bind under that name work."""
    name = ("x" * 62 + "\u00e9").encode()
    longer = ("y" * 61 + "\u20ac" * 3).encode()
    script = [
        ("a", B("", name) + E() + S()),
        ("a", D("S", name) + S()),
        ("a", C("S", name) + S()),
        ("a", B("", longer) + E() + S()),
        ("a", P(name, "SELECT 'named'") + B("", name) + E() + S()),
        ("b", B("", name) + E() + S()),
        ("a", B("", name) + E() + S()),
        (KILL,),
        ("a", B("", name) + E() + S()),
        ("a", Q("SELECT 'still here'")),
    ]
    want = assert_like_direct(pg, pgmux, script)
    assert error_codes(want[0][1]) == ["26000"] and error_codes(want[1][1]) == ["26000"]
    assert rows_of(want[4][1]) == [("named",)] and rows_of(want[7][1]) == [("named",)]


def test_latin1_client_application_name_relinked_after_utf8_client(pg, pgmux):
    """A LATIN1 client sets application_name with a non-ASCII byte; its
    server is then used by a UTF8 client (and later replaced): the LATIN1
    client is not disconnected and sees what PostgreSQL shows directly."""
    show = Q("SELECT current_setting('application_name'), "
             "convert_to(current_setting('application_name'), 'UTF8')::text")
    script = [
        ("l1", Q(b"SET application_name = 'caf\xe9'")),
        ("l1", show),
        ("u8", Q("SHOW application_name")),
        ("l1", show),
        ("u8", Q("SELECT 1")),
        (KILL,),
        ("l1", show),
        ("u8", Q("SHOW application_name")),
        ("l1", Q(b"SELECT 'd\xe9j\xe0'::text")),
    ]
    assert_like_direct(pg, pgmux, script, params={"l1": {"client_encoding": "LATIN1"}})
