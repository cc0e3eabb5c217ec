"""Faults pgmux must survive (issue 7, section 5 and "Keep"): server backends
killed under write load, a PostgreSQL restart under load, a frozen server,
2,000 half-sent startup packets and 200 clients that vanish mid-transaction.

Every test is a bounded loop against a real PostgreSQL and asserts what a
user sees: SQLSTATEs (never a bare close), rows in tables, pg_stat_activity
and pg_locks, pgmux's file descriptors. Each one reports the figures it
measured with harness.record_figures (a 'FIGURES {...}' JSON line on stdout,
figures.json in the test's tmp dir, and $PGMUX_FIGURES if set).

The restart and freeze tests run on a PostgreSQL cluster of their own
(about 2 s to start), so that the session's cluster is never disturbed.
"""

import os
import random
import re
import selectors
import socket
import struct
import subprocess
import threading
import time

import psycopg
import pytest

import harness
import pgwire
from harness import DB, HOST, PGMUX_BIN, record_figures
from test_pooling import quiet_pool

# PGMUX_FAULT_SECONDS shortens the kill storm for a quick local run; the
# issue's figure (and the default) is 30 s.
STORM_SECONDS = float(os.environ.get("PGMUX_FAULT_SECONDS", "30"))


# --------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture
def own_pg():
    """A PostgreSQL cluster for this test alone (roles and appdb, no pgbench
    tables), for tests that restart or freeze it."""
    server = harness.PgServer()
    try:
        server.start()
        server.setup_roles(pgbench=False)
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_pgmux(own_pg, pgmux):
    """Like the pgmux fixture, but for own_pg."""
    return lambda **overrides: pgmux(server=own_pg, **overrides)


def make_table(pg, name, columns, rows_sql=None):
    """(Re)create table NAME owned by app on appdb."""
    pg.sql("DROP TABLE IF EXISTS %s; CREATE TABLE %s (%s); ALTER TABLE %s OWNER TO app"
           % (name, name, columns, name), dbname=DB)
    if rows_sql:
        pg.sql(rows_sql, dbname=DB)


def wait_pool_idle(pg, pool_size, timeout):
    """Wait until app has at most POOL_SIZE backends on appdb, all 'idle'.
    Returns (seconds waited or None, last backends seen)."""
    t0 = time.monotonic()
    while True:
        b = pg.backends()
        if len(b) <= pool_size and all(state == "idle" for _, state, _ in b):
            return time.monotonic() - t0, b
        if time.monotonic() - t0 > timeout:
            return None, b
        time.sleep(0.05)


class Outcome:
    """What a raw client saw for one query: messages, the first error (or
    None), whether the connection ended, whether it timed out (hung), the
    ReadyForQuery status, and seconds from the send to the first error (or to
    the end)."""

    def __init__(self):
        self.msgs, self.error, self.closed, self.hung = [], None, False, False
        self.status, self.elapsed = None, None

    def __repr__(self):
        return "Outcome(error=%r, closed=%s, hung=%s, status=%r, elapsed=%s, types=%r)" % (
            self.error, self.closed, self.hung, self.status,
            None if self.elapsed is None else round(self.elapsed, 3),
            [t for t, _ in self.msgs])


def run_query(w, sql, timeout):
    """Send SQL as a simple Query and read up to its ReadyForQuery, an EOF
    or TIMEOUT seconds."""
    out = Outcome()
    t0 = time.monotonic()
    deadline = t0 + timeout
    try:
        w.send(pgwire.query(sql))
    except OSError:
        pass    # the peer closed: what it sent before is still to be read
    while True:
        try:
            t, p = w.recv_msg(timeout=max(0.01, deadline - time.monotonic()))
        except pgwire.ConnectionClosed:
            out.closed = True
            break
        except socket.timeout:
            out.hung = True
            break
        out.msgs.append((t, p))
        if t == "E" and out.error is None:
            out.error = pgwire.parse_error_fields(p)
            out.elapsed = time.monotonic() - t0
        if t == "Z":
            out.status = p.decode()
            break
    if out.elapsed is None:
        out.elapsed = time.monotonic() - t0
    return out


# --------------------------------------------------------------------------
# 1. kill storm (also "Keep": 0 acknowledged commits lost, every failure an
#    ErrorResponse)


BARE_CLOSE = "server closed the connection unexpectedly"


def server_said(e):
    """The server's message text in a psycopg error, or None if libpq saw the
    connection close without an ErrorResponse. psycopg leaves e.sqlstate
    unset when the ErrorResponse and the EOF arrive together ("consuming
    input failed: <message>\nserver closed the connection unexpectedly"),
    also straight from PostgreSQL, so the text is what tells the two apart;
    the raw writers below check the SQLSTATE itself."""
    text = str(e).strip()
    if text.startswith("consuming input failed: "):
        text = text[len("consuming input failed: "):]
    first = (text.splitlines() or [""])[0].strip()
    if e.sqlstate is None and (not first or first.startswith(BARE_CLOSE)):
        return None
    return first[:200]


class Writer(threading.Thread):
    """Writes until STOP is set, reconnecting after an error. TXN=False: one
    autocommit INSERT per commit; TXN=True: BEGIN, two INSERTs, COMMIT.
    RAW=False: psycopg; RAW=True: pgwire simple queries, which see exactly
    which messages came before the EOF. Records acknowledged transaction ids
    and every failure as (phase, sqlstate, server message or None for a bare
    close, how)."""

    def __init__(self, mux, wid, txn, raw, stop):
        super().__init__(daemon=True)
        self.mux, self.wid, self.txn, self.raw, self.stop = mux, wid, txn, raw, stop
        self.acked = []            # transaction ids whose commit returned
        self.attempted = []        # every transaction id tried
        self.errors = []
        self.crash = None

    def sqls(self, tid):
        if self.txn:
            return ["BEGIN",
                    "INSERT INTO fault_kill VALUES (%d, 0, %d)" % (tid, self.wid),
                    "INSERT INTO fault_kill VALUES (%d, 1, %d)" % (tid, self.wid),
                    "COMMIT"]
        return ["INSERT INTO fault_kill VALUES (%d, 0, %d)" % (tid, self.wid)]

    def run(self):
        try:
            if self.raw:
                self.run_raw()
            else:
                self.run_psycopg()
        except Exception as e:  # reported by the test
            self.crash = repr(e)

    def run_psycopg(self):
        conn = None
        seq = 0
        try:
            while not self.stop.is_set():
                phase = "connect"
                try:
                    if conn is None or conn.closed or conn.broken:
                        if conn is not None:
                            conn.close()
                        conn = self.mux.connect(autocommit=not self.txn, connect_timeout=5)
                    seq += 1
                    tid = self.wid * 1000000000 + seq
                    self.attempted.append(tid)
                    phase = "query"
                    if self.txn:
                        for sql in self.sqls(tid)[1:-1]:
                            conn.execute(sql)
                        phase = "commit"
                        conn.commit()
                    else:
                        conn.execute(self.sqls(tid)[0])
                    self.acked.append(tid)
                except psycopg.Error as e:
                    self.errors.append((phase, e.sqlstate, server_said(e),
                                        "psycopg %s" % str(e).strip().replace("\n", " | ")[:300]))
                    if conn is not None and not (conn.closed or conn.broken):
                        try:
                            conn.rollback()
                        except psycopg.Error:
                            conn.close()
                    time.sleep(0.005)
        finally:
            if conn is not None:
                conn.close()

    def run_raw(self):
        w = None
        seq = 0
        try:
            while not self.stop.is_set():
                if w is None:
                    try:
                        w, _ = self.mux.wire_login(timeout=10)
                    except pgwire.PgError as e:
                        self.errors.append(("connect", e.sqlstate, e.message, "raw"))
                        w = None
                        time.sleep(0.005)
                        continue
                    except (OSError, pgwire.ConnectionClosed) as e:
                        self.errors.append(("connect", None, None, "raw %r" % e))
                        w = None
                        time.sleep(0.005)
                        continue
                seq += 1
                tid = self.wid * 1000000000 + seq
                self.attempted.append(tid)
                ok = True
                for sql in self.sqls(tid):
                    out = run_query(w, sql, timeout=10)
                    if out.error is None and not out.closed and not out.hung:
                        continue
                    ok = False
                    how = "closed" if out.closed else "hung" if out.hung else "error"
                    e = out.error or {}
                    self.errors.append(("commit" if sql == "COMMIT" else "query", e.get("C"),
                                        e.get("M") if out.error else None,
                                        "raw %s %s" % (how, e.get("S"))))
                    if out.closed or out.hung:
                        w.close()
                        w = None
                    elif out.status == "E":
                        run_query(w, "ROLLBACK", timeout=10)
                    break
                if ok:
                    self.acked.append(tid)
                else:
                    time.sleep(0.005)
        finally:
            if w is not None:
                w.close()


@pytest.mark.timeout(int(STORM_SECONDS) + 90)
def test_kill_storm_keeps_every_acknowledged_commit(pg, pgmux, tmp_path):
    """20 writers (psycopg and raw, autocommit and 2-row transactions); one
    random server backend of pgmux terminated every 100 ms for 30 s. pgmux
    stays up, every client-visible failure is an ErrorResponse with SQLSTATE
    08006/57P01 before the close, never a bare close, every acknowledged
    commit is in the table exactly once (a transaction is all there or not at
    all), and the pool settles back to at most pool_size idle servers within
    5 s."""
    quiet_pool(pg)
    pool_size = 5
    mux = pgmux(pool_size=pool_size)
    make_table(pg, "fault_kill", "txn bigint NOT NULL, part int NOT NULL, writer int NOT NULL")

    stop = threading.Event()
    # 5 each: psycopg autocommit, psycopg transactions, raw autocommit, raw
    # transactions
    writers = [Writer(mux, i + 1, txn=(i % 2 == 1), raw=(i >= 10), stop=stop)
               for i in range(20)]
    kills = []
    killer_error = []

    def killer():
        try:
            with pg.connect(dbname=DB) as kc:
                while not stop.wait(0.1):
                    pids = [r[0] for r in kc.execute(
                        "SELECT pid FROM pg_stat_activity WHERE usename = 'app' "
                        "AND datname = %s AND backend_type = 'client backend' "
                        "AND pid <> pg_backend_pid()", (DB,)).fetchall()]
                    if pids:
                        pid = random.choice(pids)
                        kc.execute("SELECT pg_terminate_backend(%s)", (pid,))
                        kills.append(pid)
        except Exception as e:  # reported below
            killer_error.append(repr(e))

    for w in writers:
        w.start()
    time.sleep(0.5)
    kt = threading.Thread(target=killer, daemon=True)
    t_storm = time.monotonic()
    kt.start()
    time.sleep(STORM_SECONDS)
    stop.set()
    kt.join(10)
    storm = time.monotonic() - t_storm
    for w in writers:
        w.join(20)
    assert not any(w.is_alive() for w in writers), "writers still running 20 s after the storm"
    assert not killer_error, killer_error
    t_end = time.monotonic()

    # the pool settles
    settle, backends = wait_pool_idle(pg, pool_size, timeout=5.0)

    assert mux.proc.poll() is None, "pgmux exited during the kill storm:\n" + \
        harness.tail(mux.log_text())

    # what the table holds
    rows = pg.sql("SELECT txn, count(*) FROM fault_kill GROUP BY txn", dbname=DB)
    counts = {t: n for t, n in rows}
    parts = {}
    for w in writers:
        for tid in w.attempted:
            parts[tid] = 2 if w.txn else 1
    acked = [tid for w in writers for tid in w.acked]
    missing = [t for t in acked if counts.get(t, 0) != parts[t]]
    dup_or_partial = {t: n for t, n in counts.items() if n != parts.get(t, -1)}
    unacked_committed = len(set(counts) - set(acked))

    errors = [e for w in writers for e in w.errors]
    bare = [e for e in errors if e[2] is None]
    raw_errors = [e for w in writers if w.raw for e in w.errors]
    by_code = {}
    for e in errors:
        key = "%s:%s" % ("raw" if e[3].startswith("raw") else "psycopg", e[1] or "none")
        by_code[key] = by_code.get(key, 0) + 1
    by_phase = {}
    for e in errors:
        by_phase[e[0]] = by_phase.get(e[0], 0) + 1
    record_figures("kill_storm", tmp_path, storm_seconds=round(storm, 1), kills=len(kills),
                   writers=len(writers), acknowledged_commits=len(acked),
                   commits_per_second=round(len(acked) / storm),
                   attempted=len(parts), lost=len(missing),
                   duplicated_or_partial=len(dup_or_partial),
                   unacknowledged_but_committed=unacked_committed,
                   client_errors=len(errors), raw_client_errors=len(raw_errors),
                   errors_by_sqlstate=by_code,
                   errors_by_phase=by_phase,
                   # psycopg failures whose text has no server message: libpq
                   # lost it (pgmux's log shows an ErrorResponse for each)
                   psycopg_without_server_text=len(bare), samples_without_text=bare[:3],
                   settle_seconds=None if settle is None else round(settle, 2),
                   backends_after=len(backends))

    assert not [w.crash for w in writers if w.crash], [w.crash for w in writers if w.crash]
    assert len(kills) >= STORM_SECONDS * 5, "only %d kills in %.0f s" % (len(kills), storm)
    assert all(w.acked for w in writers), "a writer never got a commit through"
    # pgmux's own account: every client it closed because its server went
    # away was sent an ErrorResponse (a close without one logs sqlstate=-)
    silent = mux.log_lines(r"event=client_close\b.*\bsqlstate=-")
    silent = [l for l in silent if not re.search(r"reason=client_(eof|terminate)\b", l)]
    assert not silent, "pgmux closed %d clients without an ErrorResponse, e.g.\n%s" \
        % (len(silent), "\n".join(silent[:5]))
    # what the raw clients saw: an ErrorResponse before every EOF
    raw_bare = [e for e in raw_errors if e[2] is None]
    assert not raw_bare, "%d raw client failures without an ErrorResponse (a bare close), " \
        "e.g. %r" % (len(raw_bare), raw_bare[:5])
    odd = [e for e in raw_errors if e[1] not in ("08006", "57P01")]
    assert not odd, "raw clients' failures with SQLSTATEs other than 08006/57P01: %r" % odd[:5]
    odd = [e for e in errors if e[1] not in (None, "08006", "57P01")]
    assert not odd, "client failures with SQLSTATEs other than 08006/57P01: %r" % odd[:5]
    assert not missing, "%d of %d acknowledged commits are not in the table (or not whole), " \
                        "e.g. %r" % (len(missing), len(acked), missing[:5])
    assert not dup_or_partial, "transactions duplicated or half there: %r" \
        % list(dup_or_partial.items())[:5]
    assert settle is not None, \
        "pool not back to <= %d idle servers 5 s after the storm: %r" % (pool_size, backends)
    assert time.monotonic() - t_end < 30
    mux.assert_serves()


# --------------------------------------------------------------------------
# 2. PostgreSQL restart under load


@pytest.mark.threads
@pytest.mark.timeout(90)
def test_restart_under_load_resumes_at_once(own_pg, own_pgmux, tmp_path):
    """pg_ctl restart -m fast while 4 writers keep trying: writes succeed
    through pgmux within 2 s of the new server accepting, and idle clients
    opened before the restart keep their pgmux connection."""
    pg = own_pg
    pool_size = 5
    mux = own_pgmux(pool_size=pool_size)
    make_table(pg, "fault_restart", "id bigint NOT NULL")

    idle = [mux.connect() for _ in range(3)]
    for c in idle:
        assert c.execute("SELECT 1").fetchone()[0] == 1

    stop = threading.Event()
    oks, errs, lock = [], [], threading.Lock()

    def writer(wid):
        conn, seq = None, 0
        while not stop.is_set():
            try:
                if conn is None or conn.closed or conn.broken:
                    if conn is not None:
                        conn.close()
                    conn = mux.connect(connect_timeout=3)
                seq += 1
                conn.execute("INSERT INTO fault_restart VALUES (%s)", (wid * 10000000 + seq,))
                with lock:
                    oks.append(time.monotonic())
            except psycopg.Error as e:
                with lock:
                    errs.append((time.monotonic(), e.sqlstate, server_said(e),
                                 str(e).strip().replace("\n", " | ")[:300]))
                time.sleep(0.01)
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=writer, args=(i + 1,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)

    old_start = pg.sql("SELECT pg_postmaster_start_time()")[0][0]
    accept = {}

    def poll_accept():
        """The start of the first successful superuser query on the new
        postmaster: when PostgreSQL accepted again."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not stop.is_set():
            t_try = time.monotonic()
            try:
                with psycopg.connect(host=str(pg.sockdir), port=pg.port, user="postgres",
                                     dbname="postgres", connect_timeout=1) as c:
                    st = c.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
                if st != old_start:
                    accept["t"] = t_try
                    return
            except psycopg.Error:
                accept.setdefault("down", t_try)
            time.sleep(0.005)

    poller = threading.Thread(target=poll_accept, daemon=True)
    t_restart = time.monotonic()
    poller.start()
    try:
        pg.restart(mode="fast")
        t_ctl = time.monotonic()
        poller.join(30)
        assert "t" in accept, "never saw the restarted PostgreSQL accept"
        t_acc = accept["t"]
        # wait (bounded) for the first write through pgmux after that
        deadline = t_acc + 10
        while time.monotonic() < deadline:
            with lock:
                if any(t > t_acc for t in oks):
                    break
            time.sleep(0.01)
        time.sleep(0.5)     # a little steady state after the restart
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    with lock:
        after = [t for t in oks if t > t_acc]
        failures = [e for e in errs if e[0] > t_restart]
    resumed = (min(after) - t_acc) if after else None

    # idle clients opened before the restart: same connection objects
    idle_errors, idle_ok = [], 0
    for c in idle:
        for attempt in range(2):
            try:
                assert c.execute("SELECT 2").fetchone()[0] == 2
                idle_ok += 1
                break
            except psycopg.Error as e:
                idle_errors.append((e.sqlstate, (str(e).splitlines() or [""])[0]))
                if c.closed or c.broken:
                    break
    closed_idle = sum(1 for c in idle if c.closed or c.broken)
    for c in idle:
        c.close()

    codes = {}
    for e in failures:
        key = e[1] or (e[2] or "bare close")[:60]
        codes[key] = codes.get(key, 0) + 1
    outage = None
    if failures and after:
        outage = min(after) - min(e[0] for e in failures)
    record_figures("restart_under_load", tmp_path,
                   pg_ctl_restart_seconds=round(t_ctl - t_restart, 3),
                   writes_resumed_after_accept_seconds=(None if resumed is None
                                                        else round(max(0.0, resumed), 3)),
                   write_outage_seconds=None if outage is None else round(outage, 3),
                   writes_ok=len(oks), write_errors_during_restart=len(failures),
                   errors_by_sqlstate=codes,
                   error_samples=sorted({e[3] for e in failures})[:10], idle_clients=len(idle),
                   idle_clients_working=idle_ok, idle_client_errors=idle_errors,
                   idle_clients_disconnected=closed_idle)

    assert mux.proc.poll() is None, "pgmux exited during the restart"
    assert resumed is not None, "no write succeeded through pgmux within 10 s of PostgreSQL " \
                                "accepting again; errors: %r" % failures[-5:]
    assert resumed < 2.0, "writes resumed %.2fs after PostgreSQL accepted again" % resumed
    # every client pgmux closed got an ErrorResponse first (see server_said
    # for why psycopg's own view of that is not enough)
    silent = mux.log_lines(r"event=client_close\b.*\bsqlstate=-")
    silent = [l for l in silent if not re.search(r"reason=client_(eof|terminate)\b", l)]
    assert not silent, "pgmux closed %d clients without an ErrorResponse, e.g.\n%s" \
        % (len(silent), "\n".join(silent[:5]))
    assert closed_idle == 0, "%d of %d idle clients lost their pgmux connection: %r" \
        % (closed_idle, len(idle), idle_errors)
    assert idle_ok == len(idle), "idle clients: %d working, errors %r" % (idle_ok, idle_errors)
    assert len(idle_errors) <= len(idle), idle_errors
    mux.assert_serves()


# --------------------------------------------------------------------------
# 3. a frozen server (query_timeout, query_wait_timeout, server_connect_timeout,
#    tcp keepalive): keys of PgBouncer's


@pytest.mark.threads
@pytest.mark.timeout(90)
def test_frozen_server_errors_within_timeouts_and_resumes(own_pg, own_pgmux, tmp_path):
    """SIGSTOP on the postmaster and its backends for 10 s. With
    query_timeout = 2, query_wait_timeout = 3, server_connect_timeout = 2:
    clients whose queries went to the frozen servers get 57014/08006 within
    ~3 s, a new client gets an error within the wait timeout instead of
    hanging, and after SIGCONT a new query succeeds within 1 s."""
    pg = own_pg
    mux = own_pgmux(pool_size=2, query_timeout=2, query_wait_timeout=3,
                    server_connect_timeout=2, connection_borrow_timeout=None)

    # two servers parked in the pool
    a, _ = mux.wire_login(timeout=10)
    b, _ = mux.wire_login(timeout=10)
    for w in (a, b):
        assert w.check_query("BEGIN").status == "T"
    for w in (a, b):
        assert w.check_query("COMMIT").status == "I"

    results = {}

    def query_in_thread(key, w, sql, timeout):
        def run():
            results[key] = run_query(w, sql, timeout)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    new_client = {}

    def newcomer():
        """A client that arrives during the freeze: login and SELECT 1."""
        t0 = time.monotonic()
        try:
            w = mux.wire(timeout=12)
        except OSError as e:
            new_client.update(error={"C": "connect: %r" % e}, elapsed=time.monotonic() - t0)
            return
        try:
            try:
                w.login("app", DB, password=harness.PASSWORDS["app"])
            except pgwire.PgError as e:
                new_client.update(error=e.fields, elapsed=time.monotonic() - t0, where="login")
                return
            except (socket.timeout, pgwire.ConnectionClosed) as e:
                new_client.update(error=None, hung=True, elapsed=time.monotonic() - t0,
                                  where="login %r" % e)
                return
            out = run_query(w, "SELECT 1", timeout=12 - (time.monotonic() - t0))
            new_client.update(error=out.error, elapsed=time.monotonic() - t0, where="query",
                              outcome=out, query_elapsed=out.elapsed)
        finally:
            w.close()

    pids = pg.freeze()
    t_freeze = time.monotonic()
    resumed = None
    try:
        ta = query_in_thread("a", a, "SELECT 1", 9)
        tb = query_in_thread("b", b, "SELECT 2", 9)
        time.sleep(0.5)
        tc = threading.Thread(target=newcomer, daemon=True)
        tc.start()
        for t in (ta, tb, tc):
            t.join(max(0.1, 9.5 - (time.monotonic() - t_freeze)))
        time.sleep(max(0.0, 10.0 - (time.monotonic() - t_freeze)))
    finally:
        pg.thaw(pids)
        t_thaw = time.monotonic()
    frozen_for = t_thaw - t_freeze

    # service resumes: a new client's query succeeds
    attempts = 0
    last = None
    while time.monotonic() - t_thaw < 5:
        attempts += 1
        try:
            w, _ = mux.wire_login(timeout=2)
            with w:
                out = run_query(w, "SELECT 42", timeout=2)
            if out.error is None and not out.hung and out.status:
                resumed = time.monotonic() - t_thaw
                break
            last = out
        except (OSError, pgwire.PgError, pgwire.ConnectionClosed) as e:
            last = e
        time.sleep(0.02)

    ra, rb = results.get("a"), results.get("b")
    record_figures("frozen_server", tmp_path, frozen_seconds=round(frozen_for, 2),
                   client_a=repr(ra), client_b=repr(rb),
                   new_client_seconds=(None if "elapsed" not in new_client
                                       else round(new_client["elapsed"], 3)),
                   new_client_error=new_client.get("error"),
                   resumed_after_sigcont_seconds=None if resumed is None else round(resumed, 3),
                   resume_attempts=attempts)

    for name, r in (("a", ra), ("b", rb)):
        assert r is not None, "client %s: no outcome" % name
        assert r.error is not None, \
            "client %s (query on a frozen server) got no error while frozen: %r" % (name, r)
        assert r.error.get("C") in ("57014", "08006"), \
            "client %s got %r, expected 57014 or 08006" % (name, r.error)
        assert r.elapsed < 5.0, "client %s got its error after %.2fs (query_timeout = 2)" \
            % (name, r.elapsed)
    assert "elapsed" in new_client, "the new client never finished"
    assert new_client.get("error") is not None, \
        "a client arriving during the freeze got no error: %r" % new_client
    assert new_client["error"].get("C") in ("53300", "08006", "57014"), new_client
    # query_wait_timeout bounds the whole wait for a server, also while pgmux
    # is connecting one for the client (login is pgmux's own: no server)
    assert new_client["elapsed"] < 3 + 1.0, \
        "the new client's error (%r) came %.2fs after it connected (query_wait_timeout = 3)" \
        % (new_client["error"], new_client["elapsed"])
    assert resumed is not None, "no query succeeded within 5 s of SIGCONT; last: %r" % last
    assert resumed < 1.0, "service resumed %.2fs after SIGCONT" % resumed
    a.close()
    b.close()


def ss_lines(pid):
    """`ss -tnoH` lines of established TCP sockets of process PID."""
    r = subprocess.run(["ss", "-tnopH", "state", "established"], capture_output=True,
                       text=True, timeout=10)
    return [l for l in r.stdout.splitlines() if "pid=%d," % pid in l]


def keepalive_timer(line):
    """The keepalive timer's remaining seconds in an ss -o line, or None.
    ss prints "33min", "1min39sec", "45sec", and below a minute iproute2 6.1
    prints seconds as "4.300ms" (milliseconds have no decimal point)."""
    m = re.search(r"timer:\(keepalive,([^,]*),", line)
    if not m:
        return None
    t = m.group(1)
    total = 0.0
    mm = re.match(r"(\d+)min", t)
    if mm:
        total += 60 * int(mm.group(1))
        t = t[mm.end():]
    ms = re.match(r"([\d.]+)(sec|ms|s)?$", t)
    if ms:
        v = float(ms.group(1))
        if ms.group(2) == "ms" and "." not in ms.group(1):
            v /= 1000.0
        total += v
    return total


@pytest.mark.timeout(60)
def test_tcp_keepalive_settings_checked_and_applied(pg, pgmux, tmp_path):
    """tcp_keepalive, tcp_keepidle, tcp_keepintvl, tcp_keepcnt and
    tcp_user_timeout pass --check and put keepalive timers of tcp_keepidle on
    pgmux's server and client sockets (ss -o shows them; tcp_user_timeout is
    not visible from outside, so only --check covers it). tcp_keepalive = 0
    turns the timers off."""
    settings = dict(tcp_keepalive=1, tcp_keepidle=5, tcp_keepintvl=2, tcp_keepcnt=3,
                    tcp_user_timeout=4000)
    inst = harness.Pgmux(pg, tmp_path / "check", **settings)
    r = subprocess.run([PGMUX_BIN, "--check", str(inst.config_path)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, "--check rejected the tcp_* keys:\n%s%s" % (r.stdout, r.stderr)

    figures = {}
    for keepalive in (1, 0):
        mux = pgmux(**dict(settings, tcp_keepalive=keepalive))
        c = mux.connect()
        try:
            assert c.execute("SELECT 1").fetchone()[0] == 1
            time.sleep(0.3)
            lines = ss_lines(mux.pid)
            server = [l for l in lines if l.split()[3].endswith(":%d" % pg.port)]
            client = [l for l in lines if l.split()[2].endswith(":%d" % mux.port)]
            assert server and client, "ss shows no server/client sockets of pgmux %d:\n%s" \
                % (mux.pid, "\n".join(lines))
            st = [keepalive_timer(l) for l in server]
            ct = [keepalive_timer(l) for l in client]
            figures["keepalive_%d" % keepalive] = {"server_timers": st, "client_timers": ct}
            if keepalive:
                assert all(t is not None and t <= 5.0 for t in st), \
                    "server sockets without a keepalive timer of <= tcp_keepidle (5 s):\n" + \
                    "\n".join(server)
                assert all(t is not None and t <= 5.0 for t in ct), \
                    "client sockets without a keepalive timer of <= tcp_keepidle (5 s):\n" + \
                    "\n".join(client)
            else:
                assert all(t is None for t in st + ct), \
                    "keepalive timers with tcp_keepalive = 0:\n" + "\n".join(server + client)
        finally:
            c.close()
    record_figures("tcp_keepalive", tmp_path, **figures)


# --------------------------------------------------------------------------
# 4. 2,000 half-sent startup packets (also "Keep": closed with an
#    ErrorResponse at client_login_timeout while a real client logs in fast)


def drain_all(socks, deadline):
    """Read every socket in SOCKS until EOF or DEADLINE. Returns
    {sock: (bytes received, seconds until EOF or None)}."""
    sel = selectors.DefaultSelector()
    data = {}
    t0 = time.monotonic()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        data[s] = [b"", None]
    left = len(socks)
    while left and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.01, min(0.5, deadline - time.monotonic()))):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            if chunk:
                data[s][0] += chunk
            else:
                data[s][1] = time.monotonic() - t0
                sel.unregister(s)
                left -= 1
    sel.close()
    return data


def first_message(buf):
    """(type, error fields or None) of the first backend message in BUF."""
    if len(buf) < 5:
        return None, None
    t = chr(buf[0])
    (ln,) = struct.unpack_from("!I", buf, 1)
    if t == "E" and len(buf) >= ln + 1:
        return t, pgwire.parse_error_fields(buf[5:ln + 1])
    return t, None


@pytest.mark.threads
@pytest.mark.timeout(60)
def test_half_sent_startup_packets(pg, pgmux, tmp_path):
    """2,000 connections that send the first 6 bytes of a startup packet and
    nothing more: a real client still logs in (< 0.1 s) and queries (< 1 s);
    after client_login_timeout (3 s) every one of them gets an ErrorResponse
    and EOF, and pgmux's open file descriptors are back to the baseline."""
    n = 2000
    harness.raise_nofile(n + 1000)
    login_timeout = 3
    mux = pgmux(client_login_timeout=login_timeout)
    with mux.connect() as c:            # a server parked in the pool
        assert c.execute("SELECT 1").fetchone()[0] == 1
    time.sleep(0.3)
    # pgmux's fds other than its server connections (the real clients below
    # may make pgmux open a second server, on the other worker)
    baseline = mux.fd_count() - pg.count_backends()

    head = pgwire.startup_packet({"user": "app", "database": DB})[:6]
    socks = []
    # psycopg waits with select(), which cannot take fds >= 1024: keep a few
    # low fds free for the real clients
    spare = [os.open("/dev/null", os.O_RDONLY) for _ in range(16)]
    t_open = time.monotonic()
    try:
        for _ in range(n):
            s = socket.create_connection((HOST, mux.port), timeout=10)
            s.sendall(head)
            socks.append(s)
        for fd in spare:
            os.close(fd)
        spare = []
        opened = time.monotonic() - t_open
        # wait until pgmux holds them all
        deadline = time.monotonic() + 5
        while mux.fd_count() < baseline + n and time.monotonic() < deadline:
            time.sleep(0.02)
        held = mux.fd_count() - baseline

        logins, totals = [], []
        for _ in range(5):
            t0 = time.monotonic()
            with mux.connect(connect_timeout=5) as c:
                t1 = time.monotonic()
                assert c.execute("SELECT 40 + 2").fetchone()[0] == 42
                t2 = time.monotonic()
            logins.append(t1 - t0)
            totals.append(t2 - t0)
        real_done = time.monotonic() - t_open

        data = drain_all(socks, deadline=t_open + login_timeout + 6)
    finally:
        for s in socks:
            s.close()
        for fd in spare:
            os.close(fd)
    closed_at = [d[1] for d in data.values() if d[1] is not None]
    firsts = [first_message(d[0]) for d in data.values()]
    with_error = sum(1 for t, f in firsts if t == "E" and f and f.get("C"))
    codes = sorted({f.get("C") for t, f in firsts if f})
    # elapsed since each socket's open is at most `opened` more than since t_open
    drain_start = real_done

    deadline = time.monotonic() + 3
    while True:
        fds_after = mux.fd_count() - pg.count_backends()
        if fds_after <= baseline or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    record_figures("half_sent_startups", tmp_path, connections=n,
                   open_seconds=round(opened, 3), held_by_pgmux=held,
                   real_client_login_seconds_max=round(max(logins), 4),
                   real_client_login_seconds=[round(x, 4) for x in logins],
                   real_client_login_and_query_seconds_max=round(max(totals), 4),
                   closed=len(closed_at), closed_with_error=with_error, sqlstates=codes,
                   closed_after_seconds_min=round(drain_start + min(closed_at), 2)
                   if closed_at else None,
                   closed_after_seconds_max=round(drain_start + max(closed_at), 2)
                   if closed_at else None,
                   fd_baseline=baseline, fd_after=fds_after)

    assert held >= n, "pgmux held only %d of the %d connections" % (held, n)
    assert max(totals) < 1.0, "a real client took %.3fs to log in and query" % max(totals)
    assert max(logins) < 0.1, "a real client took %.3fs to log in among %d half-sent " \
                              "startup packets" % (max(logins), n)
    assert len(closed_at) == n, "%d of %d half-sent startups not closed within %d s of " \
                                "client_login_timeout" % (n - len(closed_at), n, 6)
    assert with_error == n, "%d of %d half-sent startups closed without an ErrorResponse; " \
                            "first bytes seen: %r" % (n - with_error, n,
                                                      sorted({t for t, _ in firsts},
                                                             key=str))
    assert drain_start + min(closed_at) >= login_timeout - 0.5, \
        "half-sent startups closed after %.2fs (client_login_timeout = %d)" \
        % (drain_start + min(closed_at), login_timeout)
    assert fds_after <= baseline, "pgmux has %d open fds (not counting server connections), " \
        "%d before the half-sent startups" % (fds_after, baseline)
    mux.assert_serves()


# --------------------------------------------------------------------------
# 5. 200 clients that BEGIN, UPDATE a row and vanish (also "Keep")


@pytest.mark.threads
@pytest.mark.timeout(60)
def test_vanishing_clients_leave_no_lock(pg, pgmux, tmp_path):
    """200 clients each BEGIN, UPDATE their own row, and vanish without a
    Terminate (half close their socket, half reset it). Within 2 s of the
    last one no row is locked (a NOWAIT lock of every row succeeds), no
    update was committed, and the pool is back to idle."""
    quiet_pool(pg)
    n, pool_size = 200, 20
    mux = pgmux(pool_size=pool_size)
    make_table(pg, "fault_vanish", "id int PRIMARY KEY, v int NOT NULL",
               "INSERT INTO fault_vanish SELECT g, 0 FROM generate_series(1, %d) g" % n)

    vanished, failures = [], []
    lock = threading.Lock()
    go = threading.Barrier(n, timeout=30)

    def client(i):
        try:
            w, _ = mux.wire_login(timeout=20)
        except Exception as e:  # reported below
            with lock:
                failures.append(("login", i, repr(e)))
            return
        try:
            go.wait()
            res = w.simple_query("BEGIN; UPDATE fault_vanish SET v = v + 1 WHERE id = %d" % i,
                                 timeout=20)
            if res.errors or res.status != "T" or res.tags[-1:] != ["UPDATE 1"]:
                with lock:
                    failures.append(("update", i, res.errors, res.status, res.tags))
        except Exception as e:  # reported below
            with lock:
                failures.append(("update", i, repr(e)))
        finally:
            if i % 2:
                w.abort()       # RST
            else:
                w.close()       # FIN, no Terminate
            with lock:
                vanished.append(time.monotonic())

    threads = [threading.Thread(target=client, args=(i + 1,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert not any(t.is_alive() for t in threads), "clients still running after 40 s"
    assert not failures, "%d clients failed: %r" % (len(failures), failures[:5])
    t_last = max(vanished)

    clean_at, state = None, None
    with pg.connect(dbname=DB) as su:
        while time.monotonic() - t_last < 5:
            try:
                with su.transaction():
                    su.execute("SELECT id FROM fault_vanish FOR UPDATE NOWAIT").fetchall()
                locked = False
            except psycopg.errors.LockNotAvailable:
                locked = True
            state = su.execute(
                "SELECT count(*), count(*) FILTER (WHERE state <> 'idle'), "
                "(SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                " WHERE a.usename = 'app' AND l.relation = 'fault_vanish'::regclass) "
                "FROM pg_stat_activity WHERE usename = 'app' AND datname = %s "
                "AND backend_type = 'client backend'", (DB,)).fetchone()
            if not locked and state[0] <= pool_size and state[1] == 0 and state[2] == 0:
                clean_at = time.monotonic()
                break
            time.sleep(0.02)
        committed = su.execute("SELECT count(*) FROM fault_vanish WHERE v <> 0").fetchone()[0]

    record_figures("vanishing_clients", tmp_path, clients=n, pool_size=pool_size,
                   run_seconds=round(t_last - t0, 2),
                   clean_after_last_vanish_seconds=(None if clean_at is None
                                                    else round(clean_at - t_last, 3)),
                   updates_committed=committed, last_state=state)
    assert clean_at is not None, "5 s after the last client vanished: locks/backends %r " \
                                 "(backends, not idle, locks on the table)" % (state,)
    assert clean_at - t_last < 2.0, "row locks/pool clean only %.2fs after the last client " \
                                    "vanished" % (clean_at - t_last)
    assert committed == 0, "%d updates of vanished clients were committed" % committed
    mux.assert_serves()
