"""Regression tests for defects real clients and fault probes found (issue 7,
section 4), as a user sees them:

- a parked server that died is lent out (a fresh BEGIN gets 08006);
- a malformed client message costs a server connection;
- memory is not given back after a burst of 10,000 clients;
- one big message takes the process's memory and delays other clients.

Each failed on the build the issue was filed against. The figures each test
measured are reported with harness.record_figures.
"""

import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import psycopg
import pytest

import harness
import pgwire
from harness import DB, HOST, record_figures
from test_pooling import quiet_pool

MiB = 1024 * 1024


def make_table(pg, name, columns, rows_sql=None):
    pg.sql("DROP TABLE IF EXISTS %s; CREATE TABLE %s (%s); ALTER TABLE %s OWNER TO app"
           % (name, name, columns, name), dbname=DB)
    if rows_sql:
        pg.sql(rows_sql, dbname=DB)


def read_until_ready_or_close(w, timeout):
    """Messages up to a ReadyForQuery or the EOF: (msgs, status or None,
    closed)."""
    msgs = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            t, p = w.recv_msg(timeout=max(0.01, deadline - time.monotonic()))
        except pgwire.ConnectionClosed:
            return msgs, None, True
        except socket.timeout:
            return msgs, None, False
        msgs.append((t, p))
        if t == "Z":
            return msgs, p.decode(), False


def wait_stopped(pid, timeout=5.0):
    """Wait until every thread of PID is stopped (SIGSTOP is asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, t)) as f:
                    states.append(f.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                pass
        if states and all(st in ("T", "t") for st in states):
            return
        assert time.monotonic() < deadline, "pgmux not stopped: thread states %r" % states
        time.sleep(0.001)


# --------------------------------------------------------------------------
# A parked server that died is lent out


@pytest.mark.threads
@pytest.mark.timeout(120)
@pytest.mark.parametrize("busy", [False, True], ids=["racing", "pgmux-busy"])
def test_dead_parked_server_is_not_lent(pg, pgmux, tmp_path, busy):
    """Round after round, the backends of the parked servers are terminated
    and the clients at once send a fresh BEGIN. Nothing of those
    transactions has reached the clients, so pgmux must take another server
    (or connect a new one): 0 errors. 'racing': the BEGINs race the
    backends' deaths. 'pgmux-busy': pgmux is stopped (SIGSTOP) while the
    BEGINs arrive and the backends die, as when it is busy, then continued:
    it finds the BEGINs first and the deaths after."""
    quiet_pool(pg)
    nclients, rounds = 2, 200 if not busy else 100
    mux = pgmux(pool_size=nclients)
    clients = [mux.wire_login()[0] for _ in range(nclients)]
    errors, reconnects, begins = [], 0, 0
    t0 = time.monotonic()
    try:
        with pg.connect(dbname=DB) as killer:
            for rnd in range(rounds):
                # park nclients servers: concurrent transactions, then end them
                pids = []
                for w in clients:
                    r = w.check_query("BEGIN; SELECT pg_backend_pid()")
                    pids.append(int(r.scalar()))
                for w in clients:
                    assert w.check_query("COMMIT").status == "I"
                assert len(set(pids)) == nclients, pids
                if busy:
                    mux.signal(signal.SIGSTOP)
                    try:
                        wait_stopped(mux.pid)
                        for w in clients:
                            w.send(pgwire.query("BEGIN"))
                        killer.execute("SELECT pg_terminate_backend(p) FROM unnest(%s::int[]) p",
                                       (pids,))
                        deadline = time.monotonic() + 5
                        while killer.execute("SELECT count(*) FROM pg_stat_activity "
                                             "WHERE pid = ANY(%s)", (pids,)).fetchone()[0]:
                            assert time.monotonic() < deadline, "backends did not exit"
                            time.sleep(0.005)
                    finally:
                        mux.signal(signal.SIGCONT)
                else:
                    killer.execute("SELECT pg_terminate_backend(p) FROM unnest(%s::int[]) p",
                                   (pids,))
                    for w in clients:
                        w.send(pgwire.query("BEGIN"))
                for i, w in enumerate(clients):
                    begins += 1
                    msgs, status, closed = read_until_ready_or_close(w, timeout=10)
                    errs = pgwire.errors_in(msgs)
                    if errs or status != "T":
                        errors.append((rnd, [e.get("C") for e in errs], status, closed,
                                       errs[0].get("M") if errs else None))
                    if not closed and status is not None:
                        w.send(pgwire.query("COMMIT"))
                        msgs, status, closed = read_until_ready_or_close(w, timeout=10)
                        errs = pgwire.errors_in(msgs)
                        if errs or status != "I":
                            errors.append((rnd, [e.get("C") for e in errs], status, closed,
                                           (errs[0].get("M") if errs else None), "COMMIT"))
                    if closed or status is None:
                        w.close()
                        clients[i] = mux.wire_login()[0]
                        reconnects += 1
    finally:
        for w in clients:
            w.close()
    elapsed = time.monotonic() - t0
    codes = {}
    for e in errors:
        for c in e[1] or ["none"]:
            codes[c] = codes.get(c, 0) + 1
    record_figures("dead_parked_server_%s" % ("busy" if busy else "racing"), tmp_path,
                   rounds=rounds, fresh_begins=begins, errors=len(errors),
                   errors_by_sqlstate=codes, reconnects=reconnects,
                   seconds=round(elapsed, 1), samples=errors[:3])
    assert not errors, "%d of %d fresh BEGINs on a server killed while parked failed, e.g. %r" \
        % (len(errors), begins, errors[:5])
    mux.assert_serves()


# --------------------------------------------------------------------------
# A malformed client message costs a server connection


def _m(t, payload):
    return (t if isinstance(t, bytes) else t.encode()) + struct.pack("!I", len(payload) + 4) \
        + payload


BAD_MESSAGES = {
    # no terminator after the query string, no parameter count
    "parse-unterminated": _m("P", b"\0SELECT 1"),
    # says 3 parameter types, carries one
    "parse-short-types": _m("P", b"\0SELECT $1\0" + struct.pack("!HI", 3, 23)),
    # a Describe with nothing after the kind byte
    "describe-unterminated": _m("D", b"S"),
    "describe-empty": _m("D", b""),
    "close-unterminated": _m("C", b"Sname"),
    "close-empty": _m("C", b""),
    "unknown-type-Z": _m("Z", b""),
    "unknown-type-0x01": _m(b"\x01", b"abc"),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("in_txn", [False, True], ids=["idle", "in-transaction"])
@pytest.mark.parametrize("case", sorted(BAD_MESSAGES))
def test_malformed_message_costs_client_not_server(pg, pgmux, tmp_path, case, in_txn):
    """The client gets ErrorResponse 08P01 (not 08006) and is closed; the
    server stays (same backend pid, no server_close in pgmux's log) and goes
    back clean: the open transaction is rolled back (no row lock, the update
    undone) and the next client on that backend starts outside a
    transaction."""
    quiet_pool(pg)
    mux = pgmux(pool_size=1)
    make_table(pg, "fault_bad", "id int PRIMARY KEY, v int NOT NULL",
               "INSERT INTO fault_bad VALUES (1, 0)")
    w, _ = mux.wire_login()
    pid = int(w.check_query("SELECT pg_backend_pid()").scalar())
    if in_txn:
        r = w.check_query("BEGIN; UPDATE fault_bad SET v = v + 1 WHERE id = 1; "
                          "SELECT pg_backend_pid()")
        assert r.status == "T" and int(r.scalar()) == pid
    mark = mux.log_mark()
    t0 = time.monotonic()
    with w:
        w.send(BAD_MESSAGES[case])
        msgs, closed = w.read_until_close(timeout=5)
    took = time.monotonic() - t0
    codes = [e.get("C") for e in pgwire.errors_in(msgs)]

    # the server: give pgmux time to do what it does, then look
    time.sleep(0.3)
    alive = bool(pg.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)))
    closes = mux.log_lines(r"event=server_close\b.*\bbe_pid=%d\b" % pid, since=mark)
    state = pg.sql("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
    locked = None
    with pg.connect(dbname=DB) as su:
        deadline = time.monotonic() + 2
        while True:
            try:
                with su.transaction():
                    su.execute("SELECT v FROM fault_bad WHERE id = 1 FOR UPDATE NOWAIT")
                locked = False
                break
            except psycopg.errors.LockNotAvailable:
                locked = True
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        v = su.execute("SELECT v FROM fault_bad WHERE id = 1").fetchone()[0]
    nxt, _ = mux.wire_login()
    with nxt:
        r = nxt.check_query("SELECT pg_backend_pid()")
        next_pid, next_status = int(r.scalar()), r.status
        r = nxt.check_query("SELECT now() = statement_timestamp()")
        fresh_txn = r.scalar() == "t"
    record_figures("malformed_%s_%s" % (case, "txn" if in_txn else "idle"), tmp_path,
                   client_sqlstates=codes, client_closed=closed, seconds=round(took, 3),
                   backend_alive=alive, server_closes=len(closes), next_pid_same=next_pid == pid,
                   next_status=next_status, row_locked=locked, v=v)

    assert closed, "the client was not closed after a malformed %s: %r" % (case, msgs)
    assert codes and codes[0] == "08P01", \
        "the client got %r for a malformed %s, expected ErrorResponse 08P01" % (codes, case)
    assert "08006" not in codes, codes
    assert not closes, "pgmux closed the server after the client's malformed %s:\n%s" \
        % (case, "\n".join(closes))
    assert alive, "backend %d is gone after the client's malformed %s" % (pid, case)
    assert next_pid == pid, "the next client got backend %d, not %d" % (next_pid, pid)
    assert state and state[0][0] == "idle", "backend %d is %r" % (pid, state)
    assert next_status == "I" and fresh_txn, \
        "the next client on backend %d is inside a transaction (status %r)" % (pid, next_status)
    assert locked is False, "the row updated before the malformed message is still locked"
    assert v == 0, "the update before the malformed message was committed (v = %d)" % v


# --------------------------------------------------------------------------
# Memory is not given back


def login_many(port, n, params, batch=500, timeout=60):
    """Open N raw connections that log in (trust: no password) and stay
    idle. Returns the sockets; raises if one fails."""
    startup = pgwire.startup_packet(params)
    socks = []
    deadline = time.monotonic() + timeout
    while len(socks) < n:
        todo = []
        for _ in range(min(batch, n - len(socks))):
            s = socket.create_connection((HOST, port), timeout=10)
            s.sendall(startup)
            s.setblocking(False)
            todo.append(s)
        sel = selectors.DefaultSelector()
        bufs = {}
        for s in todo:
            sel.register(s, selectors.EVENT_READ)
            bufs[s] = b""
        left = len(todo)
        while left:
            if time.monotonic() > deadline:
                raise AssertionError("logins did not finish within %d s" % timeout)
            for key, _ in sel.select(timeout=1):
                s = key.fileobj
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise AssertionError("pgmux closed a login: %r" % bufs[s][:200])
                bufs[s] += chunk
                b = bufs[s]
                # done at ReadyForQuery (the last message of the login)
                if len(b) >= 6 and b[-6:-5] == b"Z" and b[-5:-1] == b"\0\0\0\x05":
                    sel.unregister(s)
                    left -= 1
                elif b[:1] == b"E":
                    raise AssertionError("login failed: %r" %
                                         pgwire.parse_error_fields(b[5:]))
        sel.close()
        socks += todo
    return socks


def trust_mux_warmed(pgmux, n, params, warm, settle, **settings):
    """A trust-auth pgmux for N raw clients: server parameters known and a
    server parked, the allocator warmed up on a burst of WARM logins. Returns
    it and its RSS (KiB) SETTLE seconds after that burst left."""
    harness.raise_nofile(n + 2000)
    mux = pgmux(auth_type="trust", max_client_conn=n + 100, **settings)
    with mux.connect(password="") as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
    for s in login_many(mux.port, warm, params):
        s.close()
    time.sleep(settle)
    return mux, mux.rss_kib()


@pytest.mark.timeout(120)
def test_rss_per_idle_logged_in_client(pgmux, tmp_path):
    """2,000 clients log in (with the startup parameters a driver sends) and
    stay idle: pgmux's RSS grows by at most 2.75 KiB per client (no startup
    packet kept after login, what a client saw of the server's parameters
    shared by its pool; 5.2 KiB before). They still work afterwards."""
    n = 2000
    per_client_kib = 2.75
    params = {"user": "app", "database": DB, "application_name": "idle-test",
              "client_encoding": "UTF8", "DateStyle": "ISO, MDY"}
    mux, base = trust_mux_warmed(pgmux, n, params, warm=300, settle=2.5, workers=1,
                                 log_level="info")
    socks = login_many(mux.port, n, params)
    time.sleep(1.0)
    held = mux.rss_kib()
    per = (held - base) / n
    sanitizer = harness.pgmux_sanitizer()
    record_figures("rss_per_idle_client", tmp_path, clients=n, rss_base_kib=base,
                   rss_held_kib=held, per_client_kib=round(per, 2), sanitizer=sanitizer,
                   asserted=not sanitizer)
    # every one of them still answers: a query on a sample revives its buffers
    for s in socks[::100]:
        s.setblocking(True)
        s.settimeout(10)
        s.sendall(pgwire.query("SELECT 41 + 1"))
        got = b""
        while b"Z\x00\x00\x00\x05" not in got:
            chunk = s.recv(65536)
            assert chunk, "connection closed"
            got += chunk
        assert b"42" in got and not got.startswith(b"E")
    for s in socks:
        s.close()
    if sanitizer:
        pytest.skip("RSS per client not checked under %s (shadow memory); figures recorded"
                    % sanitizer)
    assert per <= per_client_kib, \
        "pgmux holds %.2f KiB per idle logged-in client (%d clients: RSS %d KiB -> %d KiB); " \
        "allowed: %.1f KiB" % (per, n, base, held, per_client_kib)
    mux.assert_serves(user="app")


@pytest.mark.threads
@pytest.mark.timeout(120)
def test_memory_given_back_after_10000_clients(pgmux, tmp_path):
    """10,000 idle clients log in and disconnect; within 5 s pgmux's RSS is
    back within 8 MiB of where it was before them (it stayed at the burst's
    peak). Under a sanitizer freed memory sits in quarantine, so there only
    the figures are reported."""
    n = 10000
    allowance_kib = 8 * 1024
    params = {"user": "app", "database": DB}
    mux, base = trust_mux_warmed(pgmux, n, params, warm=200, settle=1.0)
    t0 = time.monotonic()
    socks = login_many(mux.port, n, params)
    login_s = time.monotonic() - t0
    peak = mux.rss_kib()
    for s in socks:
        s.close()
    t_closed = time.monotonic()
    after, samples = None, []
    while time.monotonic() - t_closed < 5:
        time.sleep(0.25)
        after = mux.rss_kib()
        samples.append(after)
        if after - base <= allowance_kib and mux.fd_count() < 100:
            break
    gone = time.monotonic() - t_closed
    sanitizer = harness.pgmux_sanitizer()
    record_figures("memory_after_burst", tmp_path, clients=n, login_seconds=round(login_s, 2),
                   rss_base_mib=round(base / 1024, 1), rss_peak_mib=round(peak / 1024, 1),
                   rss_after_mib=round(after / 1024, 1),
                   above_base_mib=round((after - base) / 1024, 1),
                   seconds_after_close=round(gone, 2), sanitizer=sanitizer,
                   asserted=not sanitizer)
    if sanitizer:
        pytest.skip("RSS after the burst not checked under %s (quarantine); figures recorded"
                    % sanitizer)
    assert after - base <= allowance_kib, \
        "pgmux's RSS is %.1f MiB, %.1f MiB above its %.1f MiB before 10,000 clients came " \
        "and went (peak %.1f MiB); allowed: 8 MiB" % (after / 1024, (after - base) / 1024,
                                                      base / 1024, peak / 1024)
    mux.assert_serves(user="app")


# --------------------------------------------------------------------------
# One big message takes the process's memory


BIG = 200 * MiB
CHUNK = 1 * MiB


class RssSampler:
    """Samples pgmux's VmRSS every 10 ms in a thread; .max afterwards."""

    def __init__(self, mux):
        self.mux, self.max, self.n = mux, 0, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.max = max(self.max, self.mux.rss_kib())
                self.n += 1
            except (OSError, KeyError):
                return
            self._stop.wait(0.01)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


PINGER = r"""
import json, select, sys, time
import psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
conn.execute("SELECT 1")
print("ready", flush=True)
out = []
while not select.select([sys.stdin], [], [], 0.005)[0]:
    t0 = time.monotonic()
    conn.execute("SELECT 1").fetchone()
    out.append((t0, time.monotonic() - t0))
print(json.dumps(out), flush=True)
"""


class Pinger:
    """Another client running SELECT 1 in a loop, in a process of its own
    (so that the test's threads and GIL do not delay it). .during(t0, t1)
    afterwards: the durations of the SELECTs that started in [t0, t1]
    (CLOCK_MONOTONIC is the same in both processes)."""

    def __init__(self, mux):
        self.proc = subprocess.Popen([sys.executable, "-c", PINGER, mux.dsn()],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise AssertionError("pinger did not start: %r %s" % (line, self.proc.stderr.read()))
        self.samples, self.error = [], None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            out, err = self.proc.communicate("stop\n", timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        if self.proc.returncode != 0:
            self.error = "pinger exited %d: %s" % (self.proc.returncode, err[-2000:])
        else:
            self.samples = json.loads(out.strip().splitlines()[-1])

    def during(self, t0, t1):
        return [d for t, d in self.samples if t0 <= t <= t1]


def send_big(w, head, size, tail):
    """Send HEAD, SIZE bytes of 'x' (in CHUNK pieces) and TAIL."""
    w.sock.settimeout(120)
    w.sock.sendall(head)
    block = b"x" * CHUNK
    left = size
    while left:
        n = min(left, CHUNK)
        w.sock.sendall(block if n == CHUNK else block[:n])
        left -= n
    w.sock.sendall(tail)


def big_query(w):
    head = b"SELECT length('"
    tail = b"')\0"
    total = len(head) + BIG + len(tail)
    send_big(w, b"Q" + struct.pack("!I", total + 4) + head, BIG, tail)


def big_parse(w):
    head = b"\0SELECT length('"            # unnamed statement
    tail = b"')\0" + struct.pack("!H", 0)
    total = len(head) + BIG + len(tail)
    send_big(w, b"P" + struct.pack("!I", total + 4) + head, BIG,
             tail + pgwire.bind() + pgwire.execute() + pgwire.sync())


def big_bind(w):
    w.send(pgwire.parse("big_stmt", "SELECT length($1::text)") + pgwire.sync())
    res = w.read_until_ready(timeout=10)
    assert not res.errors, res.errors
    head = b"\0big_stmt\0" + struct.pack("!HHi", 0, 1, BIG)
    tail = struct.pack("!H", 0)
    total = len(head) + BIG + len(tail)
    send_big(w, b"B" + struct.pack("!I", total + 4) + head, BIG,
             tail + pgwire.execute() + pgwire.sync())


BIG_SENDERS = {"query": big_query, "parse": big_parse, "bind": big_bind}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["query", "parse", "bind"])
def test_big_message_streams(pg, pgmux, tmp_path, kind):
    """One client sends a single 200 MB Query / Parse / Bind: pgmux's RSS
    grows by less than 16 MiB, the query gives the right answer, and another
    client's SELECT 1 meanwhile never takes 0.1 s. (Bind was streamed
    already when the issue was filed: that case guards it.)"""
    # one worker: the other client shares the big one's thread (with two,
    # the kernel's SO_REUSEPORT hash decides, and half the runs would not
    # show the delay)
    mux = pgmux(pool_size=3, workers=1)
    w, _ = mux.wire_login(timeout=120)
    assert w.check_query("SELECT 1").scalar() == "1"
    with Pinger(mux) as pinger:
        time.sleep(0.3)
        base = mux.rss_kib()
        t0 = time.monotonic()
        with RssSampler(mux) as rss:
            BIG_SENDERS[kind](w)
            t_sent = time.monotonic()
            res = w.read_until_ready(timeout=120)
            t_done = time.monotonic()
    during = pinger.during(t0, t_done)
    w.close()
    growth = rss.max - base
    sanitizer = harness.pgmux_sanitizer()
    record_figures("big_%s" % kind, tmp_path, size_mib=BIG // MiB,
                   send_seconds=round(t_sent - t0, 2), answer_seconds=round(t_done - t0, 2),
                   rss_base_mib=round(base / 1024, 1), rss_peak_mib=round(rss.max / 1024, 1),
                   rss_growth_mib=round(growth / 1024, 1), rss_samples=rss.n,
                   other_client_selects=len(during),
                   other_client_slowest_seconds=round(max(during), 4) if during else None,
                   sanitizer=sanitizer)
    assert pinger.error is None, "the other client failed: %s" % pinger.error
    assert not res.errors, "the 200 MB %s failed: %r" % (kind, res.errors)
    assert res.rows and res.rows[0][0] == str(BIG), \
        "the 200 MB %s answered %r, expected %d" % (kind, res.rows, BIG)
    assert during, "the other client ran no SELECT 1 during the send"
    # an instrumented build scans the 200 MB several times slower, on a machine
    # that CI shares with the other stages' processes
    limit = 0.1 if sanitizer is None else 0.5
    assert max(during) < limit, "another client's SELECT 1 took %.3fs during the 200 MB %s" \
        % (max(during), kind)
    if not sanitizer:
        assert growth < 16 * 1024, \
            "pgmux's RSS grew by %.1f MiB for one 200 MB %s (allowed: 16 MiB)" \
            % (growth / 1024, kind)
    mux.assert_serves()


def test_copy_sent_by_departed_client_is_ended(pg, pgmux):
    """A client sends COPY ... FROM STDIN and Terminate at once: the copy starts
    on the backend only after pgmux has seen the client leave. pgmux ends it
    (CopyFail), and the server is back in its pool at once, not after the
    10 s drain timeout (found by fuzz_client_txn)."""
    mux = pgmux(pool_size=1, workers=1)
    pg.sql("CREATE TABLE IF NOT EXISTS copy_departed (a int)", dbname=DB)
    pg.sql("GRANT ALL ON copy_departed TO app", dbname=DB)
    c, _ = mux.wire_login()
    c.check_query("SELECT 1")
    pid = pg.backends()[0][0]
    mark = mux.log_mark()
    c.send(pgwire.query("COPY copy_departed FROM STDIN") + pgwire.terminate())
    c.close()
    mux.wait_for_log(r"event=server_drained .*be_pid=%d" % pid, since=mark, timeout=3)
    t0 = time.monotonic()
    with mux.connect() as again:
        assert again.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
    assert time.monotonic() - t0 < 2
    pg.sql("DROP TABLE copy_departed", dbname=DB)


@pytest.mark.timeout(120)
def test_unknown_users_make_no_pools(pgmux):
    """Logins as 3,000 made-up user names (each fails) do not make a pool each:
    pools are never freed, so they used to cost about 0.5 kB apiece for good
    (found with the fuzzing rig). The unknown user still gets the same SCRAM
    challenge and 28P01 as before."""
    if harness.pgmux_sanitizer():
        pytest.skip("RSS means nothing under a sanitizer's allocator")
    mux = pgmux(log_level="info")
    mux.assert_serves()
    c, _ = mux.wire_login()
    c.close()

    def burst(n, tag):
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", mux.port), timeout=5)
            s.sendall(pgwire.startup_packet({"user": "nobody_%s_%d" % (tag, i),
                                             "database": DB}))
            hdr = s.recv(1)
            assert hdr == b"R"  # the SCRAM challenge, as for a known user
            s.close()

    burst(300, "warm")
    time.sleep(1.5)
    base = mux.rss_kib()
    burst(3000, "burst")
    time.sleep(1.5)
    growth = mux.rss_kib() - base
    record_figures("unknown_users", None, logins=3000, rss_growth_kib=growth)
    assert growth < 512, "3,000 unknown-user logins grew pgmux by %d KiB" % growth
    with pytest.raises(pgwire.PgError) as ei:
        mux.wire_login(user="nobody_at_all", password="x")
    assert ei.value.sqlstate == "28P01"
