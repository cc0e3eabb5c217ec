"""Session state in transaction pooling (issue 3: parts C, D, E).

- SET tracking: a client's session SETs follow it to every server
  connection it gets; SET LOCAL and rolled-back SETs do not stick; no client
  ever sees another client's SET.
- Pinning: statements that leave state pgmux cannot move pin the client to
  its server connection, with one `event=session_pinned reason=... pins=N`
  log line per pin; UNLISTEN *, pg_advisory_unlock_all() and DISCARD ALL
  unpin when they clear the only reasons.
- session_pinning = deny refuses those statements with 0A000.

Tests taking `target` also run against PostgreSQL directly, which checks the
expected values themselves.
"""

import random
import re
import threading
import time

import pytest

import pgwire
from harness import DB, HOST, PASSWORDS
from test_pooling import quiet_pool
from test_prepared import (B, E, P, S, DirectPg, _terminate_app_backends, direct_wire,
                           is_mux, pin_lines, summarize)
from test_prepared import target  # noqa: F401 (the fixture, used by parameter name)

SUPERUSER = "pinsuper"
SUPERUSER_PASSWORD = "pinsuper-secret"
USERLIST = dict(PASSWORDS, **{SUPERUSER: SUPERUSER_PASSWORD})

KV = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def log_fields(line):
    return {k: v[1:-1] if v.startswith('"') else v for k, v in KV.findall(line)}


@pytest.fixture(scope="module")
def superuser_role(pg):
    """A superuser that logs in over TCP with a password (LOAD needs one)."""
    if not pg.sql("SELECT 1 FROM pg_roles WHERE rolname = %s", (SUPERUSER,)):
        pg.sql("SET password_encryption = 'scram-sha-256'; "
               "CREATE ROLE %s SUPERUSER LOGIN PASSWORD '%s'" % (SUPERUSER, SUPERUSER_PASSWORD))
    return SUPERUSER


def login(mux, user="app"):
    w, _ = mux.wire_login(user=user, password=USERLIST[user])
    return w


def scalar(w, sql):
    res = w.check_query(sql)
    assert res.rows, "no row from %r" % sql
    return res.rows[-1][0]


def pid_of(w):
    return int(scalar(w, "SELECT pg_backend_pid()"))


def _query_fresh_client(mux, user, sql):
    """A new client runs SQL; returns the backend messages up to
    ReadyForQuery, or up to the close (pgmux closes the connection after a
    borrow timeout)."""
    w = login(mux, user)
    with w:
        w.send(pgwire.query(sql))
        msgs = []
        while True:
            try:
                t, p = w.recv_msg(timeout=10)
            except pgwire.ConnectionClosed:
                return msgs
            msgs.append((t, p))
            if t == "Z":
                return msgs


def assert_borrow_times_out(mux, user="app"):
    """A fresh client's query waits connection_borrow_timeout and gets 53300:
    every server connection of the pool is pinned."""
    msgs = _query_fresh_client(mux, user, "SELECT 1")
    codes = [e.get("C") for e in pgwire.errors_in(msgs)]
    assert codes == ["53300"], "expected a borrow timeout, got %r" % summarize(msgs)


def assert_pool_free(mux, user="app", within=5.0):
    """A fresh client can run a query (retrying WITHIN seconds while the pool
    notices that a pinned client left)."""
    deadline = time.monotonic() + within
    while True:
        msgs = _query_fresh_client(mux, user, "SELECT 'free'")
        codes = [e.get("C") for e in pgwire.errors_in(msgs)]
        if not codes:
            assert summarize(msgs)[-3:] == [("D", ("free",)), ("C", "SELECT 1"), ("Z", "I")], \
                summarize(msgs)
            return
        assert codes == ["53300"], summarize(msgs)
        assert time.monotonic() < deadline, "the pool stayed blocked: %r" % summarize(msgs)


# --------------------------------------------------------------------------
# Pin reasons


class Case:
    def __init__(self, id, reason, stmt, check=None, not_applied=None, user="app",
                 error=None):
        self.id, self.reason, self.stmt = id, reason, stmt
        self.check = check                  # (sql, value) proving the state is there
        self.not_applied = not_applied      # (sql, value) when the statement was refused
        self.user = user
        self.error = error                  # SQLSTATE the statement itself raises

    def sql(self, k):
        return self.stmt.format(k=k)


ADVISORY_HELD = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                 "AND pid = pg_backend_pid()", "1")


def advisory_free(key):
    return ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d" % key,
            "0")


LONG_SEARCH_PATH = ", ".join("untracked_schema_%02d" % i for i in range(20))

PIN_CASES = [
    Case("prepare", "sql_prepare", "PREPARE pin_p{k} AS SELECT 42",
         ("EXECUTE pin_p0", "42"),
         ("SELECT count(*) FROM pg_prepared_statements WHERE name = 'pin_p0'", "0")),
    Case("temp_table", "temp_table", "CREATE TEMP TABLE pin_t{k} AS SELECT 42 AS v",
         ("SELECT v FROM pin_t0", "42"),
         ("SELECT count(*) FROM pg_class WHERE relname = 'pin_t0'", "0")),
    Case("temp_sequence", "temp_table", "CREATE TEMPORARY SEQUENCE pin_s{k} START 42",
         ("SELECT last_value FROM pin_s0", "42"),
         ("SELECT count(*) FROM pg_class WHERE relname = 'pin_s0'", "0")),
    Case("temp_view", "temp_table", "CREATE TEMP VIEW pin_v{k} AS SELECT 42 AS v",
         ("SELECT v FROM pin_v0", "42"),
         ("SELECT count(*) FROM pg_class WHERE relname = 'pin_v0'", "0")),
    Case("advisory_lock", "advisory_lock", "SELECT pg_advisory_lock(4240 + {k})",
         ADVISORY_HELD, advisory_free(4240)),
    Case("try_advisory_lock", "advisory_lock", "SELECT pg_try_advisory_lock(4250 + {k})",
         ADVISORY_HELD, advisory_free(4250)),
    Case("advisory_lock_shared", "advisory_lock", "SELECT pg_advisory_lock_shared(4260 + {k})",
         ADVISORY_HELD, advisory_free(4260)),
    Case("try_advisory_lock_shared", "advisory_lock",
         "SELECT pg_try_advisory_lock_shared(4270 + {k})", ADVISORY_HELD, advisory_free(4270)),
    Case("listen", "listen", "LISTEN pin_chan{k}",
         ("SELECT string_agg(c, ',') FROM pg_listening_channels() c", "pin_chan0"),
         ("SELECT count(*) FROM pg_listening_channels()", "0")),
    Case("hold_cursor", "hold_cursor",
         "DECLARE pin_c{k} SCROLL CURSOR WITH HOLD FOR SELECT 42",
         ("FETCH FIRST FROM pin_c0", "42"),
         ("SELECT count(*) FROM pg_cursors", "0")),
    Case("load", "load", "LOAD 'auto_explain'",
         ("SHOW auto_explain.log_min_duration", "-1"),
         ("SELECT current_setting('auto_explain.log_min_duration', true)", None),
         user=SUPERUSER),
    Case("set_role", "set_role", "SET ROLE app",
         ("SHOW role", "app"), ("SHOW role", "none")),
    Case("set_session_authorization", "set_role", "SET SESSION AUTHORIZATION app",
         ("SELECT session_user", "app")),
    Case("set_config", "set_config", "SELECT set_config('work_mem', '5{k}MB', false)",
         ("SHOW work_mem", "50MB"), ("SHOW work_mem", "4MB")),
    # a SET whose value is too long for pgmux to record and replay
    Case("untracked", "untracked", "SET search_path = " + LONG_SEARCH_PATH,
         ("SHOW search_path", LONG_SEARCH_PATH),
         ("SHOW search_path", '"$user", public')),
]


def run_pin_stmt(w, case, k):
    res = w.simple_query(case.sql(k))
    codes = [e.get("C") for e in res.errors]
    assert codes == ([case.error] if case.error else []), \
        "%r: %r" % (case.sql(k), summarize(res.messages))
    assert res.status == "I"


@pytest.mark.timeout(45)
@pytest.mark.parametrize("case", PIN_CASES, ids=[c.id for c in PIN_CASES])
def test_pin_logged_counted_and_held(pg, pgmux, superuser_role, case):
    """The statement pins: one log line with reason, pins=1 then pins=2 for a
    second client, the client keeps its server (and the state on it) across
    transactions, and with both servers pinned a third client times out
    until a pinned client leaves."""
    mux = pgmux(pool_size=2, connection_borrow_timeout=1, userlist=USERLIST)
    mark = mux.log_mark()
    a = login(mux, case.user)
    with a:
        run_pin_stmt(a, case, 0)
        m = mux.wait_for_log(r"\bevent=session_pinned\b.*\breason=%s\b" % case.reason, since=mark)
        f = log_fields(m.string)
        pid_a = pid_of(a)
        assert f.get("reason") == case.reason, m.string
        assert f.get("pins") == "1", m.string
        assert f.get("db") == DB and f.get("user") == case.user, m.string
        assert f.get("server_pid") == str(pid_a), m.string
        assert f.get("client"), m.string
        # the state stays reachable, on the same server, transaction after transaction
        for _ in range(3):
            if case.check:
                assert scalar(a, case.check[0]) == case.check[1]
            assert pid_of(a) == pid_a
        # a second client pinned for the same reason: the counter grows
        c = login(mux, case.user)
        with c:
            mark2 = mux.log_mark()
            run_pin_stmt(c, case, 1)
            m2 = mux.wait_for_log(r"\bevent=session_pinned\b.*\breason=%s\b" % case.reason,
                                  since=mark2)
            f2 = log_fields(m2.string)
            assert f2.get("pins") == "2", m2.string
            pid_c = pid_of(c)
            assert pid_c != pid_a and f2.get("server_pid") == str(pid_c), m2.string
            assert f2.get("client") != f.get("client"), (m.string, m2.string)
            # both server connections are pinned: nobody else gets one
            assert_borrow_times_out(mux, case.user)
            # an already pinned client pinning again logs nothing more
            run_pin_stmt(a, case, 2)
            assert pid_of(a) == pid_a
            time.sleep(0.2)
            lines = pin_lines(mux, mark)
            assert len(lines) == 2, lines
    # both pinned clients left: their servers are usable again
    assert_pool_free(mux, case.user)


@pytest.mark.timeout(45)
@pytest.mark.parametrize("case", PIN_CASES, ids=[c.id for c in PIN_CASES])
def test_pin_denied(pg, pgmux, superuser_role, case):
    """session_pinning = deny: 0A000 naming the reason, the statement had no
    effect, the session goes on and still shares the only server."""
    mux = pgmux(pool_size=1, connection_borrow_timeout=1, session_pinning="deny",
                userlist=USERLIST)
    mark = mux.log_mark()
    a = login(mux, case.user)
    with a:
        res = a.simple_query(case.sql(0))
        assert [e.get("C") for e in res.errors] == ["0A000"], summarize(res.messages)
        msg = res.errors[0].get("M", "") + " " + res.errors[0].get("D", "")
        assert case.reason in msg, "reason %r not in %r" % (case.reason, res.errors[0])
        assert res.status == "I" and res.types()[-1] == "Z"
        assert a.pending(0.2) == []
        assert scalar(a, "SELECT 'usable'") == "usable"
        if case.not_applied:
            assert scalar(a, case.not_applied[0]) == case.not_applied[1]
        # not pinned: another client gets the only server
        assert_pool_free(mux, case.user, within=0)
        assert scalar(a, "SELECT 'still usable'") == "still usable"
        # refused through the extended protocol as well
        a.send(P("", case.sql(0)) + B() + E() + S())
        res = a.read_until_ready()
        assert [e.get("C") for e in res.errors] == ["0A000"], summarize(res.messages)
        assert res.status == "I"
        assert scalar(a, "SELECT 'after extended'") == "after extended"
        assert_pool_free(mux, case.user, within=0)
    assert pin_lines(mux, mark) == []


EXTENDED_CASES = [c for c in PIN_CASES
                  if c.id in ("temp_table", "advisory_lock", "listen", "set_config", "prepare")]


@pytest.mark.parametrize("case", EXTENDED_CASES, ids=[c.id for c in EXTENDED_CASES])
def test_pin_through_extended_protocol(pgmux, case):
    """Drivers send everything with Parse/Bind/Execute: the same statements
    pin there too."""
    mux = pgmux(pool_size=1, connection_borrow_timeout=1)
    mark = mux.log_mark()
    a = login(mux)
    with a:
        a.send(P("", case.sql(0)) + B() + E() + S())
        res = a.read_until_ready()
        assert not res.errors, summarize(res.messages)
        m = mux.wait_for_log(r"\bevent=session_pinned\b.*\breason=%s\b" % case.reason,
                             since=mark)
        assert log_fields(m.string).get("pins") == "1"
        assert log_fields(m.string).get("server_pid") == str(pid_of(a))
        assert scalar(a, case.check[0]) == case.check[1]
        assert_borrow_times_out(mux)


def test_pin_counters_are_per_reason(pgmux):
    mux = pgmux(pool_size=5)
    mark = mux.log_mark()
    conns = []
    try:
        for sql, reason, want in [
            ("CREATE TEMP TABLE cnt_t (x int)", "temp_table", "1"),
            ("LISTEN cnt_chan", "listen", "1"),
            ("CREATE TEMP VIEW cnt_v AS SELECT 1 AS x", "temp_table", "2"),
            ("LISTEN cnt_chan", "listen", "2"),
            ("PREPARE cnt_p AS SELECT 1", "sql_prepare", "1"),
        ]:
            w = login(mux)
            conns.append(w)
            m0 = mux.log_mark()
            w.check_query(sql)
            m = mux.wait_for_log(r"\bevent=session_pinned\b.*\breason=%s\b" % reason, since=m0)
            assert log_fields(m.string).get("pins") == want, (sql, m.string)
        assert len(pin_lines(mux, mark)) == 5
    finally:
        for w in conns:
            w.close()


def test_transaction_scoped_state_does_not_pin(pgmux):
    """_xact_ advisory locks, set_config(..., true), SET LOCAL (also of ROLE),
    plain SETs, UNLISTEN, DEALLOCATE, regular tables and keywords inside
    strings or comments must not pin: another client shares the only server."""
    mux = pgmux(pool_size=1, connection_borrow_timeout=1)
    mark = mux.log_mark()
    a = login(mux)
    with a:
        for sql in [
            "BEGIN",
            "SELECT pg_advisory_xact_lock(91)",
            "SELECT pg_try_advisory_xact_lock(92)",
            "SELECT pg_advisory_xact_lock_shared(93)",
            "SELECT set_config('work_mem', '5MB', true)",
            "SET LOCAL work_mem = '6MB'",
            "SET LOCAL ROLE app",
            "COMMIT",
            "SELECT pg_try_advisory_xact_lock(94)",
            "SELECT set_config('work_mem', '5MB', true)",
            "SET work_mem = '7MB'",
            "UNLISTEN *",
            "DEALLOCATE ALL",
            "CREATE TABLE not_temp_pin_check (x int)",
            "DROP TABLE not_temp_pin_check",
            "SELECT 'LISTEN x; PREPARE p AS SELECT 1; CREATE TEMP TABLE t (x int)'",
            "SELECT 1 -- pg_advisory_lock(1)\n",
            "SELECT /* LOAD 'auto_explain' */ 1",
            "SELECT $$SET ROLE app$$",
        ]:
            status = a.check_query(sql).status
            assert pin_lines(mux, mark) == [], "pinned by %r" % sql
            if status == "I":
                msgs = _query_fresh_client(mux, "app", "SELECT 'free'")
                assert pgwire.errors_in(msgs) == [], \
                    "after %r another client got %r" % (sql, summarize(msgs))
        assert scalar(a, "SHOW work_mem") == "7MB"
    assert pin_lines(mux, mark) == []


# --------------------------------------------------------------------------
# Unpinning


def pinned_client(mux, stmts, reason, user="app"):
    mark = mux.log_mark()
    w = login(mux, user)
    for sql in stmts:
        w.check_query(sql)
    mux.wait_for_log(r"\bevent=session_pinned\b.*\breason=%s\b" % reason, since=mark)
    return w


def test_unlisten_all_unpins(pg, pgmux):
    mux = pgmux(pool_size=1, connection_borrow_timeout=1)
    a = pinned_client(mux, ["LISTEN unpin_chan"], "listen")
    with a:
        # LISTEN works: a notification from elsewhere reaches the client
        pg.sql("NOTIFY unpin_chan, 'hello'", dbname=DB)
        notes = [p for t, p in a.pending(1.0) if t == "A"]
        assert len(notes) == 1 and b"unpin_chan" in notes[0] and b"hello" in notes[0], notes
        assert_borrow_times_out(mux)
        mark = mux.log_mark()
        a.check_query("UNLISTEN *")
        m = mux.wait_for_log(r"\bevent=session_unpinned\b", since=mark)
        assert log_fields(m.string).get("client"), m.string
        assert_pool_free(mux)
        assert scalar(a, "SELECT count(*) FROM pg_listening_channels()") == "0"


def test_pg_advisory_unlock_all_unpins(pg, pgmux):
    mux = pgmux(pool_size=1, connection_borrow_timeout=1)
    a = pinned_client(mux, ["SELECT pg_advisory_lock(7701)", "SELECT pg_advisory_lock(7702)"],
                      "advisory_lock")
    with a:
        assert_borrow_times_out(mux)
        mark = mux.log_mark()
        a.check_query("SELECT pg_advisory_unlock_all()")
        mux.wait_for_log(r"\bevent=session_unpinned\b", since=mark)
        assert_pool_free(mux)
        assert pg.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                      "AND objid IN (7701, 7702)")[0][0] == 0


@pytest.mark.parametrize("first,then,cleared,reasons", [
    ("LISTEN two_reasons", "CREATE TEMP TABLE two_reasons_t (x int)", "UNLISTEN *",
     ["listen", "temp_table"]),
    ("SELECT pg_advisory_lock(7801)", "LISTEN two_reasons", "SELECT pg_advisory_unlock_all()",
     ["advisory_lock", "listen"]),
], ids=["unlisten_with_temp_table", "unlock_all_with_listen"])
def test_partial_unpin_keeps_the_pin(pgmux, first, then, cleared, reasons):
    """Clearing one reason while another remains keeps the client pinned.
    A client pinned for two reasons has one log line (and one count) for
    each."""
    mux = pgmux(pool_size=1, connection_borrow_timeout=1)
    mark = mux.log_mark()
    a = login(mux)
    with a:
        a.check_query(first)
        a.check_query(then)
        a.check_query(cleared)
        time.sleep(0.2)
        assert mux.log_lines(r"\bevent=session_unpinned\b", since=mark) == []
        assert_borrow_times_out(mux)
        got = [(log_fields(l).get("reason"), log_fields(l).get("pins"))
               for l in pin_lines(mux, mark)]
        assert got == [(r, "1") for r in reasons], got
        assert scalar(a, "SELECT 'pinned but usable'") == "pinned but usable"


def test_discard_all_unpins_every_reason_but_load(pg, pgmux, superuser_role):
    mux = pgmux(pool_size=1, connection_borrow_timeout=1, userlist=USERLIST)
    stmts = ["PREPARE d_p AS SELECT 1", "CREATE TEMP TABLE d_t (x int)",
             "SELECT pg_advisory_lock(7901)", "LISTEN d_chan",
             "DECLARE d_c CURSOR WITH HOLD FOR SELECT 1", "SET ROLE app",
             "SELECT set_config('work_mem', '9MB', false)"]
    a = pinned_client(mux, stmts, "sql_prepare")
    with a:
        assert_borrow_times_out(mux)
        mark = mux.log_mark()
        assert a.check_query("DISCARD ALL").tags == ["DISCARD ALL"]
        mux.wait_for_log(r"\bevent=session_unpinned\b", since=mark)
        assert_pool_free(mux)
        assert scalar(a, "SHOW work_mem") == "4MB"
        assert scalar(a, "SHOW role") == "none"
        assert scalar(a, "SELECT count(*) FROM pg_prepared_statements") == "0"
    # LOAD cannot be undone: DISCARD ALL leaves the client pinned
    s = pinned_client(mux, ["LOAD 'auto_explain'"], "load", user=SUPERUSER)
    with s:
        mark = mux.log_mark()
        s.check_query("DISCARD ALL")
        time.sleep(0.2)
        assert mux.log_lines(r"\bevent=session_unpinned\b", since=mark) == []
        assert_borrow_times_out(mux, SUPERUSER)
        assert scalar(s, "SHOW auto_explain.log_min_duration") == "-1"


# --------------------------------------------------------------------------
# session_pinning per database


def _db_section(pg, **extra):
    d = {"host": HOST, "port": pg.port, "dbname": DB, "pool_size": 1}
    d.update(extra)
    return {DB: d}


def test_session_pinning_deny_in_database_section(pg, pgmux):
    mux = pgmux(connection_borrow_timeout=1, databases=_db_section(pg, session_pinning="deny"))
    a = login(mux)
    with a:
        res = a.simple_query("LISTEN per_db")
        assert [e.get("C") for e in res.errors] == ["0A000"], summarize(res.messages)
        assert "listen" in res.errors[0].get("M", "") + res.errors[0].get("D", "")
        assert scalar(a, "SELECT 1") == "1"
        assert_pool_free(mux, within=0)


def test_session_pinning_allow_in_database_section_overrides_global_deny(pg, pgmux):
    mux = pgmux(connection_borrow_timeout=1, session_pinning="deny",
                databases=_db_section(pg, session_pinning="allow"))
    mark = mux.log_mark()
    a = login(mux)
    with a:
        a.check_query("LISTEN per_db")
        mux.wait_for_log(r"\bevent=session_pinned\b.*\breason=listen\b", since=mark)
        assert_borrow_times_out(mux)


# --------------------------------------------------------------------------
# SET tracking: exact semantics, compared with PostgreSQL


SET_SCRIPT = [
    ("a", "SET work_mem = '8MB'"), ("b", "SHOW work_mem"), ("a", "SHOW work_mem"),
    ("a", "SET SESSION statement_timeout = '5s'"), ("b", "SHOW statement_timeout"),
    ("a", "SHOW statement_timeout"),
    ("a", "BEGIN"), ("a", "SET LOCAL work_mem = '9MB'"), ("a", "SHOW work_mem"),
    ("a", "COMMIT"), ("a", "SHOW work_mem"), ("b", "SHOW work_mem"),
    ("a", "BEGIN"), ("a", "SET work_mem = '10MB'"), ("a", "SHOW work_mem"), ("a", "ROLLBACK"),
    ("a", "SHOW work_mem"),
    ("a", "BEGIN"), ("a", "SET work_mem = '11MB'"), ("a", "COMMIT"), ("b", "SHOW work_mem"),
    ("a", "SHOW work_mem"),
    ("a", "BEGIN"), ("a", "SET work_mem = '12MB'"), ("a", "SELECT 1/0"), ("a", "ROLLBACK"),
    ("a", "SHOW work_mem"),
    ("a", "SET search_path TO a_schema, public"), ("b", "SHOW search_path"),
    ("a", "SHOW search_path"),
    ("a", "SET TIME ZONE 'Asia/Tokyo'"), ("b", "SHOW TimeZone"), ("a", "SHOW TimeZone"),
    ("a", "RESET work_mem"), ("a", "SHOW work_mem"),
    ("b", "SET work_mem TO '2MB'"), ("a", "SHOW work_mem"), ("b", "SHOW work_mem"),
    ("a", "SET application_name = 'app-a'"), ("b", "SHOW application_name"),
    ("a", "SHOW application_name"),
    ("b", "SET lock_timeout = 1234"), ("b", "SET statement_timeout TO DEFAULT"),
    ("a", "SHOW lock_timeout"), ("b", "SHOW lock_timeout"), ("b", "SHOW statement_timeout"),
    ("a", "RESET ALL"), ("a", "SHOW statement_timeout"), ("a", "SHOW search_path"),
    ("a", "SHOW application_name"), ("a", "SHOW TimeZone"), ("b", "SHOW work_mem"),
    ("a", "SET work_mem = '13MB'; SET statement_timeout = 7000"), ("a", "SHOW work_mem"),
    ("a", "SHOW statement_timeout"), ("b", "SHOW statement_timeout"),
    ("a", "BEGIN; SET work_mem = '14MB'; COMMIT"), ("a", "SHOW work_mem"),
    ("a", "BEGIN; SET work_mem = '15MB'; ROLLBACK"), ("a", "SHOW work_mem"),
    ("a", "SET work_mem = '16MB'; SELECT 1/0"), ("a", "SHOW work_mem"),
    ("b", "RESET ALL"), ("b", "SHOW work_mem"), ("b", "SHOW lock_timeout"),
    ("a", "SHOW work_mem"), ("a", "SHOW application_name"),
]


def _set_step(w, sql, extended):
    if extended:
        w.send(P("", sql) + B() + E() + S())
        res = w.read_until_ready()
    else:
        res = w.simple_query(sql)
    return (tuple(res.tags), tuple(tuple(r) for r in res.rows),
            tuple(e.get("C") for e in res.errors), res.status)


def _run_set_script(t, extended=False, between=None):
    a, _ = t.wire_login(params={"application_name": "start-a"})
    b, _ = t.wire_login()
    out = []
    with a, b:
        for who, sql in SET_SCRIPT:
            if extended and ";" in sql:
                continue
            r = _set_step(a if who == "a" else b, sql, extended)
            out.append((who, sql, r))
            if between and r[3] == "I":
                between()
    return out


@pytest.fixture(scope="module")
def set_reference(pg):
    ref = {}
    for extended in (False, True):
        ref[extended] = _run_set_script(DirectPg(pg), extended)
    # a few anchors, so that a broken reference cannot go unnoticed
    got = {(w, s): r for w, s, r in ref[False]}
    assert got[("a", "SHOW application_name")][1] in ((("app-a",),), (("start-a",),))
    assert ref[False][1][2][1] == (("4MB",),)           # b never sees a's 8MB
    assert ref[False][2][2][1] == (("8MB",),)
    return ref


@pytest.mark.parametrize("mode", ["shared_server", "new_server", "extended"])
def test_set_semantics_match_direct(pg, pgmux, set_reference, mode):
    """Two clients on one server connection (or, with new_server, a new
    server connection before every statement outside a transaction): every
    SHOW gives what two direct connections give."""
    extended = mode == "extended"
    between = None
    if mode == "new_server":
        quiet_pool(pg)

        def between():
            _terminate_app_backends(pg)
            time.sleep(0.05)

    mux = pgmux(pool_size=1)
    got = _run_set_script(mux, extended, between)
    want = set_reference[extended]
    for g, w in zip(got, want):
        assert g == w, "differs from PostgreSQL:\n got  %r\n want %r" % (g, w)
    assert len(got) == len(want)


SAVEPOINT_SCRIPT = [
    "BEGIN", "SET work_mem = '15MB'", "SAVEPOINT s1", "SET work_mem = '16MB'",
    "ROLLBACK TO SAVEPOINT s1", "SHOW work_mem", "COMMIT", "SHOW work_mem",
    "BEGIN", "SET work_mem = '17MB'", "SELECT 1/0", "COMMIT", "SHOW work_mem",
    "BEGIN", "SAVEPOINT s2", "SET work_mem = '18MB'", "RELEASE SAVEPOINT s2", "COMMIT",
    "SHOW work_mem",
]


def test_set_rolled_back_by_savepoint_or_failed_commit(pg, pgmux):
    """A SET undone by ROLLBACK TO SAVEPOINT, or in a transaction whose COMMIT
    is really a ROLLBACK, does not stick; one released with its savepoint and
    committed does."""
    def run(conn):
        return [_set_step(conn, sql, False) for sql in SAVEPOINT_SCRIPT]

    with direct_wire(pg) as ref:
        want = run(ref)
    shows = [r[1] for sql, r in zip(SAVEPOINT_SCRIPT, want) if sql.startswith("SHOW")]
    assert shows == [(("15MB",),), (("15MB",),), (("15MB",),), (("18MB",),)]
    quiet_pool(pg)
    mux = pgmux(pool_size=1)
    a = login(mux)
    with a:
        got = []
        for sql in SAVEPOINT_SCRIPT:
            got.append(_set_step(a, sql, False))
            if got[-1][3] == "I":
                # a new server: only what pgmux remembered survives
                _terminate_app_backends(pg)
                time.sleep(0.05)
        assert got == want


def test_set_reapplied_after_server_loss_psycopg(pg, pgmux):
    quiet_pool(pg)
    mux = pgmux(pool_size=1)
    with mux.connect() as c, mux.connect() as other:
        c.execute("SET work_mem = '24MB'")
        c.execute("SET search_path = psy_schema, public")
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        pg.terminate(pid)
        time.sleep(0.1)
        row = c.execute("SELECT current_setting('work_mem'), current_setting('search_path'), "
                        "pg_backend_pid()").fetchone()
        assert row[:2] == ("24MB", "psy_schema, public") and row[2] != pid
        assert other.execute("SHOW work_mem").fetchone()[0] == "4MB"
        assert c.execute("SHOW work_mem").fetchone()[0] == "24MB"


# --------------------------------------------------------------------------
# SET isolation under load: ~20 clients over 3 server connections


DATESTYLES = ["ISO, DMY", "SQL, MDY", "Postgres, YMD", "German, DMY", "ISO, MDY"]
TIMEZONES = ["UTC", "Asia/Tokyo", "America/New_York", "Europe/Paris"]
SETTINGS = ["statement_timeout", "lock_timeout", "work_mem", "search_path",
            "application_name", "DateStyle", "TimeZone", "extra_float_digits"]


def gen_value(name, rnd, i, n):
    """(SQL literal, what SHOW prints) for setting NAME, unique-ish per client."""
    if name in ("statement_timeout", "lock_timeout"):
        v = 1001 + 2 * ((i * 1000 + n) % 40000)      # odd: always printed in ms
        return str(v), "%dms" % v
    if name == "work_mem":
        v = 4097 + 2 * ((i * 100 + n) % 500)         # odd: always printed in kB
        return "'%dkB'" % v, "%dkB" % v
    if name == "search_path":
        return "sp_%d_%d, public" % (i, n), "sp_%d_%d, public" % (i, n)
    if name == "application_name":
        return "'c%d-%d'" % (i, n), "c%d-%d" % (i, n)
    if name == "DateStyle":
        v = rnd.choice(DATESTYLES)
        return "'%s'" % v, v
    if name == "TimeZone":
        v = rnd.choice(TIMEZONES)
        return "'%s'" % v, v
    if name == "extra_float_digits":
        v = str(rnd.randint(-3, 3))
        return v, v
    raise AssertionError(name)


READ_ALL = "SELECT %s" % ", ".join("current_setting('%s')" % n for n in SETTINGS)


class WireClient:
    """Simple or extended protocol over the raw client."""

    def __init__(self, t, extended, params):
        self.w, _ = t.wire_login(params=params, timeout=20)
        self.extended = extended

    def run(self, sql):
        if self.extended:
            self.w.send(P("", sql) + B() + E() + S())
            res = self.w.read_until_ready(timeout=20)
        else:
            res = self.w.simple_query(sql, timeout=20)
        if res.errors:
            raise AssertionError("%r failed: %r" % (sql, res.errors[0]))
        return [tuple(r) for r in res.rows]

    def close(self):
        self.w.close()


class PsycopgClient:
    def __init__(self, t, params):
        kw = {"application_name": params["application_name"]} if params else {}
        self.c = t.connect(**kw)

    def run(self, sql):
        cur = self.c.execute(sql)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []

    def close(self):
        self.c.close()


def _set_client(t, i, iterations, baseline, extended, failures, observer, checks):
    rnd = random.Random(1000 + i)
    params = {"application_name": "start%d" % i} if i % 2 == 0 else None
    base = dict(baseline)
    if params:
        base["application_name"] = params["application_name"]
    if extended:
        cl = WireClient(t, True, params)
    elif i % 2 == 0:
        cl = PsycopgClient(t, params)
    else:
        cl = WireClient(t, False, params)
    model = dict(base)
    history = []
    n = 0

    def check(expected, where):
        got = dict(zip(SETTINGS, cl.run(READ_ALL)[0]))
        if got != expected:
            diff = {k: (got[k], expected[k]) for k in SETTINGS if got[k] != expected[k]}
            raise AssertionError("client %d %s: (got, expected) %r; last ops %r"
                                 % (i, where, diff, history[-4:]))
        name = rnd.choice(SETTINGS)
        shown = cl.run("SHOW %s" % name)[0][0]
        if shown != expected[name]:
            raise AssertionError("client %d %s: SHOW %s = %r, expected %r; last ops %r"
                                 % (i, where, name, shown, expected[name], history[-4:]))
        checks.append(i)

    try:
        check(model, "at start")
        for _ in range(iterations):
            if observer:
                check(model, "observer")
                continue
            n += 1
            name = rnd.choice(SETTINGS)
            lit, shown = gen_value(name, rnd, i, n)
            op = rnd.choice(["set", "set", "set_session", "reset", "reset_all", "tx_commit",
                             "tx_local", "tx_rollback", "multi", "check"])
            if op == "reset_all" and rnd.random() < 0.6:
                op = "set"
            if op == "multi" and extended:
                op = "set"
            history.append((op, name, lit))
            if op == "set":
                cl.run("SET %s = %s" % (name, lit))
                model[name] = shown
            elif op == "set_session":
                cl.run("SET SESSION %s TO %s" % (name, lit))
                model[name] = shown
            elif op == "reset":
                cl.run("RESET %s" % name)
                model[name] = base[name]
            elif op == "reset_all":
                cl.run("RESET ALL")
                model = dict(base)
            elif op in ("tx_commit", "tx_local", "tx_rollback"):
                cl.run("BEGIN")
                local = "LOCAL " if op == "tx_local" else ""
                cl.run("SET %s%s = %s" % (local, name, lit))
                inside = dict(model, **{name: shown})
                check(inside, "inside %s" % op)
                cl.run("ROLLBACK" if op == "tx_rollback" else "COMMIT")
                if op == "tx_commit":
                    model = inside
            elif op == "multi":
                name2 = rnd.choice(SETTINGS)
                lit2, shown2 = gen_value(name2, rnd, i, n + 50000)
                cl.run("SET %s = %s; SET %s = %s" % (name, lit, name2, lit2))
                model[name] = shown
                model[name2] = shown2
            check(model, "after %s" % op)
    except Exception as e:  # reported by the test
        failures.append(str(e) if isinstance(e, AssertionError) else "client %d: %r" % (i, e))
    finally:
        cl.close()


def _baseline(pg):
    with direct_wire(pg) as w:
        return dict(zip(SETTINGS, w.check_query(READ_ALL).rows[0]))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("protocol", ["simple", "extended"])
@pytest.mark.threads
def test_no_client_sees_another_clients_set(pg, target, protocol):
    t = target(pool_size=3)
    baseline = _baseline(pg)
    assert baseline["work_mem"] == "4MB" and baseline["statement_timeout"] == "0"
    failures, checks = [], []
    threads = [threading.Thread(target=_set_client,
                                args=(t, i, 30, baseline, protocol == "extended", failures,
                                      i >= 18, checks),
                                daemon=True) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(50)
    assert not any(th.is_alive() for th in threads), "a client hung"
    assert not failures, "\n".join(failures[:5])
    # every client checked its settings at start and after every operation
    assert len(checks) >= 20 * 31, len(checks)
    if is_mux(t):
        assert pin_lines(t) == []
