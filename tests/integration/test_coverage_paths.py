"""Paths of src/pool that the rest of the suite never reached (gcov, issue #7),
provoked on purpose, each with its user-visible outcome checked: no crash, the
pool back to its size, the clients involved answered as PostgreSQL would, the
next client served.

- a server that died while its release was in flight (its FATAL read together
  with its last ReadyForQuery), handed to a waiting client: client_on_wake's
  dead-server branch takes another server for the waiter (same worker, and
  handed across workers);
- a client that disconnects while the server opened for it is still logging
  in (link_client_leaves on a SV_CONNECTING server: the login finishes and the
  server goes to the pool), and while pgmux runs the parameter sync on its
  server (SV_INTERNAL: the SET finishes, the server goes back to the pool);
- a client that disconnects from the wait queue just after a server was
  handed to it from another worker (pool_leave_queue's reserved-server branch:
  its worker adopts the detached server and parks it);
- a waiter granted the slot of a server that died (client_on_wake opens a new
  server for it);
- defects found on the way, compared with PostgreSQL directly (DEALLOCATE
  that does not run, errors pgmux raises itself in an aborted transaction).

The timing is made deterministic by stopping processes, never by sleeping and
hoping: SIGSTOP on pgmux lets several events pile up so that one loop turn
sees them in a known order; SIGSTOP on the postmaster holds a new server
connection in its login (the kernel completes the TCP handshake, nobody
answers the startup packet); SIGSTOP on a backend holds pgmux's own query.
Every stopped process is continued in a finally block.

tests/coverage.sh confirms with gcov that each path is reached.
"""

import contextlib
import os
import re
import signal
import time

import pytest

import pgwire

Q = pgwire.query


def postmaster_pid(pg):
    return int((pg.data / "postmaster.pid").read_text().split()[0])


@contextlib.contextmanager
def stopped(pid, signal_from=None):
    """SIGSTOP PID for the duration of the block (SIGCONT in any case).
    SIGNAL_FROM: a harness.Pgmux, to send through it (so that its teardown
    knows which signals the test sent)."""
    send = signal_from.signal if signal_from is not None else (lambda s: os.kill(pid, s))
    send(signal.SIGSTOP)
    try:
        # kill() returns before the process is stopped: wait until every
        # thread is
        wait_until(lambda: all_threads_stopped(pid), 5.0, "process %d to stop" % pid)
        yield
    finally:
        send(signal.SIGCONT)


def all_threads_stopped(pid):
    states = []
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            stat = open("/proc/%d/task/%s/stat" % (pid, tid)).read()
        except FileNotFoundError:
            continue
        states.append(stat.rsplit(")", 1)[1].split()[0])
    return states and all(st in ("T", "t") for st in states)


def wait_until(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.02)


def local_addr(w):
    host, port = w.sock.getsockname()[:2]
    return "%s:%d" % (host, port)


def backend_pids(pg):
    return sorted(p for p, _, _ in pg.backends())


def backend_state(pg, pid):
    r = pg.sql("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
    return r[0][0] if r else None


def assert_pool_settles(mux, pg, size, timeout=10.0):
    """Within TIMEOUT: at most SIZE server connections, all idle, and a new
    client is served."""
    def settled():
        rows = pg.backends()
        return len(rows) <= size and all(st == "idle" for _, st, _ in rows)
    wait_until(settled, timeout, "the pool to settle at <= %d idle servers (have %r)"
               % (size, pg.backends()))
    mux.assert_serves()
    assert len(pg.backends()) <= size


# --------------------------------------------------------------------------
# client_on_wake: the server handed to a waiter is dead


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.timeout(60)
def test_waiter_gets_server_that_died_after_its_ready(pg, pgmux, workers):
    """A's transaction ends (ReadyForQuery) and its backend is terminated right
    after, before pgmux read either: pgmux reads the ReadyForQuery and the
    FATAL together. The server is released to B, who was waiting; the FATAL
    still in its input marks it dead (message_while_idle on the same worker;
    with two workers, closed_while_idle when A and B landed on different ones
    and the server was handed across), and B must be served by another server
    instead of getting an error. The pool ends at its size."""
    mux = pgmux(pool_size=1, workers=workers)
    a, _ = mux.wire_login()
    a.check_query("SELECT 1")  # the pool's only server, parked
    [victim] = backend_pids(pg)
    b, _ = mux.wire_login()
    mark = mux.log_mark()
    a.send(Q("SELECT pg_sleep(0.3)"))
    wait_until(lambda: backend_state(pg, victim) == "active", what="A's query to run")
    b.send(Q("SELECT 'b served'"))
    mux.wait_for_log(r"client_state addr=%s from=idle to=waiting" % re.escape(local_addr(b)),
                     since=mark)
    with stopped(mux.pid, signal_from=mux):
        # the backend answers A and goes idle; pgmux reads nothing meanwhile
        wait_until(lambda: backend_state(pg, victim) == "idle", what="A's query to finish")
        pg.terminate(victim)  # FATAL 57P01 + EOF, queued behind the ReadyForQuery
    ra = a.read_until_ready()
    assert ra.error is None and ra.rows == [[""]], ra.messages
    rb = b.read_until_ready()
    assert rb.error is None, "B got %r from a dead server" % (rb.error,)
    assert rb.rows == [["b served"]]
    closes = mux.log_lines(r"server_close .*be_pid=%d reason=(message_while_idle|"
                           r"closed_while_idle)" % victim, since=mark)
    assert closes, "the dead server was not dropped at take:\n%s" % mux.log_since(mark)
    assert victim not in backend_pids(pg)
    a.close()
    b.close()
    assert_pool_settles(mux, pg, 1)


# --------------------------------------------------------------------------
# link_client_leaves: the client leaves while its server logs in / syncs


@pytest.mark.timeout(60)
def test_client_leaves_while_its_server_logs_in(pg, pgmux):
    """B's query needs a new server; while that server's login is held (the
    postmaster is stopped, so the startup packet gets no answer), B
    disconnects. The login then completes and the server goes to the pool,
    where the next client gets it: no new connection, no error."""
    mux = pgmux(pool_size=2, workers=1)
    a = mux.connect()
    a.execute("BEGIN")
    a.execute("SELECT 1")  # holds the first server
    [first] = backend_pids(pg)
    b, _ = mux.wire_login()
    baddr = re.escape(local_addr(b))
    mark = mux.log_mark()
    with stopped(postmaster_pid(pg)):
        b.send(Q("SELECT 1"))
        # pgmux opened the second server and sent its startup packet
        mux.wait_for_log(r"client_state addr=%s from=idle to=waiting" % baddr, since=mark)
        # (the TCP connect completes in the kernel's backlog and pgmux sends
        # its startup packet; the server is SV_CONNECTING either way)
        time.sleep(0.2)
        b.abort()
        mux.wait_for_log(r"client_close .*addr=%s reason=client_(eof|error)" % baddr,
                         since=mark)
        assert not mux.log_lines(r"server_connect ", since=mark)
    # the postmaster answers: the login completes, with no client waiting
    m = mux.wait_for_log(r"server_connect .*be_pid=(\d+)", since=mark)
    second = int(m.group(1))
    mux.wait_for_log(r"server_state .*be_pid=%d from=\w+ to=(releasing|idle)" % second,
                     since=mark)
    assert not mux.log_lines(r"server_close ", since=mark), mux.log_since(mark)
    a.execute("COMMIT")
    a.close()
    assert sorted(backend_pids(pg)) == sorted([first, second])
    # both servers serve the next clients; nothing new is opened
    c1, c2 = mux.connect(), mux.connect()
    c1.execute("BEGIN")
    c2.execute("BEGIN")
    pids = {c1.execute("SELECT pg_backend_pid()").fetchone()[0],
            c2.execute("SELECT pg_backend_pid()").fetchone()[0]}
    assert pids == {first, second}
    c1.close()
    c2.close()
    assert_pool_settles(mux, pg, 2)


@pytest.mark.timeout(60)
def test_client_leaves_during_parameter_sync(pg, pgmux):
    """B has its own application_name, so linking the parked server to B
    starts pgmux's parameter sync (a SET, state internal). The backend is
    stopped, so the SET stays unanswered while B disconnects. Once the backend
    answers, the server goes back to the pool (not closed) and serves C."""
    mux = pgmux(pool_size=1, workers=1)
    with mux.connect() as a:
        a.execute("SELECT 1")
    [pid] = backend_pids(pg)
    b, _ = mux.wire_login(params={"application_name": "cov_sync"})
    baddr = re.escape(local_addr(b))
    mark = mux.log_mark()
    with stopped(pid):
        b.send(Q("SELECT current_setting('application_name')"))
        mux.wait_for_log(r"server_state .*be_pid=%d from=\w+ to=internal" % pid, since=mark)
        b.abort()
        mux.wait_for_log(r"client_close .*addr=%s reason=client_(eof|error)" % baddr,
                         since=mark)
    mux.wait_for_log(r"server_state .*be_pid=%d from=internal to=releasing" % pid, since=mark)
    assert not mux.log_lines(r"server_close ", since=mark), mux.log_since(mark)
    with mux.connect(application_name="cov_next") as c:
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == pid
        assert c.execute("SELECT current_setting('application_name')").fetchone()[0] \
            == "cov_next"
    assert backend_pids(pg) == [pid]
    assert_pool_settles(mux, pg, 1)


# --------------------------------------------------------------------------
# pool_leave_queue: the client leaves just after a server was handed to it


def hold_server(mux, clients_by_worker, server_worker, mark):
    """Log in a raw client and open a transaction; its server lives on the
    client's worker (a new one, or one parked there: the pool never moves a
    server while a worker has one parked or the cap is not reached). Returns
    (conn, backend pid); files the client under its worker."""
    w, _ = mux.wire_login()
    w.check_query("BEGIN")
    pid = int(w.check_query("SELECT pg_backend_pid()").scalar())
    if pid not in server_worker:
        m = mux.wait_for_log(r"server_connect .*be_pid=%d worker=(\d+)" % pid, since=mark)
        server_worker[pid] = int(m.group(1))
    clients_by_worker.setdefault(server_worker[pid], []).append((w, pid))
    return w, pid


@pytest.mark.threads
@pytest.mark.timeout(90)
def test_waiter_leaves_after_server_handed_over(pg, pgmux):
    """Worker X releases a server to C, the first waiter, who lives on worker
    Y; before Y takes the hand-over, C disconnects. The server must go back to
    the pool (pool_leave_queue's reserved-server branch: Y adopts the detached
    server and parks it), not leak a slot or crash.

    Made deterministic by stopping pgmux: every server is held by a client
    whose worker is known (from the server_connect log of the server it got).
    While pgmux is stopped, A (on X) sends a short query and COMMIT, the other
    clients on Y send a pipeline of 2000 queries each, and C closes its
    socket. When pgmux
    continues (epoll_wait returns EINTR first on both workers), Y's next loop
    turn holds all of Y's I/O, C's EOF last, and forwarding the pipelines keeps
    it busy for tens of milliseconds; X meanwhile forwards A's query and
    releases the server to C when PostgreSQL answers, 15 ms later.

    (A borrow timeout in C's place cannot be ordered so from outside: after
    SIGCONT the interrupted epoll_wait makes each worker run its expired
    timers before any I/O, so C's timer always runs before X has read the
    COMMIT. check_cancel covers the branch directly, through the cancel of a
    waiting client that was just handed a server.)"""
    P, PIPELINE = 24, 2000  # 2000 Queries of 14 bytes: one read of 32 KiB each
    mux = pgmux(pool_size=P, workers=2)
    mark = mux.log_mark()
    by_worker, server_worker = {}, {}
    conns = []
    for _ in range(P):
        conns.append(hold_server(mux, by_worker, server_worker, mark))
    assert len(by_worker) == 2, "all %d clients on one worker" % P
    wx, wy = sorted(by_worker, key=lambda k: len(by_worker[k]))
    a, a_pid = by_worker[wx][0]      # ends its transaction on X
    c, c_pid = by_worker[wy][0]      # will wait, on Y
    ys = by_worker[wy][1:]           # keep Y busy
    assert len(ys) >= 4, by_worker
    # C gives its server to F, a new client (F takes it on Y, or has it
    # handed over to X): the pool stays full and C holds nothing
    c.check_query("ROLLBACK")
    f, f_pid = hold_server(mux, by_worker, server_worker, mark)
    assert f_pid == c_pid
    caddr = re.escape(local_addr(c))
    cmark = mux.log_mark()
    c.send(Q("SELECT 'c'"))
    mux.wait_for_log(r"client_state addr=%s from=idle to=waiting" % caddr, since=cmark)
    pipeline = Q("SELECT 1") * PIPELINE
    assert len(pipeline) < 32768
    with stopped(mux.pid, signal_from=mux):
        # the sleep keeps X's release after Y's first loop turn has collected
        # its I/O, even if Y's thread is scheduled a few ms late
        a.send(Q("SELECT pg_sleep(0.015); COMMIT"))
        for w, _ in ys:
            w.send(pipeline)
        c.abort()
    ra = a.read_until_ready()
    assert ra.error is None and ra.tags[-1] == "COMMIT", ra.messages
    for w, _ in ys:
        r = w.read_until_ready(count=PIPELINE)
        assert not r.errors and len(r.rows) == PIPELINE, r.messages
    mux.wait_for_log(r"client_close .*addr=%s reason=client_(eof|error)" % caddr, since=cmark)
    # C never got the server: it was still waiting when it left, after X had
    # released the server to it (else this test did not exercise the path)
    assert not mux.log_lines(r"client_state addr=%s from=waiting to=active" % caddr,
                             since=cmark)
    lines = mux.log_since(cmark).splitlines()
    released = [i for i, l in enumerate(lines)
                if re.search(r"server_state .*be_pid=%d from=active to=releasing" % a_pid, l)]
    left = [i for i, l in enumerate(lines)
            if re.search(r"client_close .*addr=%s " % caddr, l)]
    assert released and left and released[0] < left[0], \
        "X did not release A's server before C's EOF was handled:\n" + "\n".join(lines[:40])
    for w, _ in ys:
        w.check_query("COMMIT")
    for w, _ in conns + [(f, f_pid)]:
        if w is not c:
            w.close()
    c.close()
    # A's server was not lost: parked again, and the pool serves on
    assert not mux.log_lines(r"server_close ", since=mark), mux.log_since(mark)
    assert a_pid in backend_pids(pg)
    assert_pool_settles(mux, pg, P)


# --------------------------------------------------------------------------
# client_on_wake: a slot granted to a waiter


@pytest.mark.timeout(60)
def test_waiter_gets_slot_of_server_that_died(pg, pgmux):
    """The pool's only server dies (its backend terminated) while B waits for
    it: the slot goes to B, whose worker opens a new server for it
    (client_on_wake's granted-slot branch); A, whose transaction was on the
    dead server, gets an error, not a silent close."""
    mux = pgmux(pool_size=1, workers=1)
    a, _ = mux.wire_login()
    a.check_query("BEGIN")
    [victim] = backend_pids(pg)
    b, _ = mux.wire_login()
    mark = mux.log_mark()
    b.send(Q("SELECT 'b served'"))
    mux.wait_for_log(r"client_state addr=%s from=idle to=waiting" % re.escape(local_addr(b)),
                     since=mark)
    pg.terminate(victim)
    rb = b.read_until_ready()
    assert rb.error is None and rb.rows == [["b served"]], rb.messages
    msgs, closed = a.read_until_close()
    errs = pgwire.errors_in(msgs)
    assert closed and errs and errs[0]["C"] in ("08006", "57P01"), msgs
    b.close()
    assert_pool_settles(mux, pg, 1)


# --------------------------------------------------------------------------
# found on the way (the fake DEALLOCATE, pgmux's own errors in an aborted
# transaction), each compared with PostgreSQL


def _replies(w, data, count=1):
    """Send DATA, read COUNT ReadyForQuery; message types with SQLSTATEs."""
    w.send(data)
    r = w.read_until_ready(count=count)
    return [t if t != "E" else "E:" + pgwire.parse_error_fields(p)["C"] for t, p in r.messages]


def _direct_or_mux(request, pg, pgmux):
    if request.param == "direct":
        from test_prepared import DirectPg
        return DirectPg(pg)
    return pgmux(pool_size=1)


@pytest.fixture(params=["direct", "pgmux"])
def target(request, pg, pgmux):
    """PostgreSQL directly (the reference that validates the test), or a
    pgmux with one server in front of it."""
    return _direct_or_mux(request, pg, pgmux)


@pytest.mark.parametrize("why", ["aborted_transaction", "skipping_to_sync"])
def test_deallocate_that_does_not_run_keeps_statement(target, why):
    """PostgreSQL refuses DEALLOCATE in an aborted transaction (25P02), and
    ignores a Query sent after an extended-protocol error before the Sync: in
    both cases the statement is still there afterwards. (The paths write_fake
    and req_push take here, 25P02 with the name put back and a fake undone at
    once, never ran in the suite before.)

    Regression: frontend.c's on_query pushed the fake DEALLOCATE first and
    removed the client's name after it; with nothing queued ahead the fake is
    answered (or undone) within the push, when the name is still registered,
    so nothing was put back and the statement was lost (26000 at the Bind)."""
    w, _ = target.wire_login()
    P, B, E, S, H = pgwire.parse, pgwire.bind, pgwire.execute, pgwire.sync, pgwire.flush
    assert _replies(w, P("a", "SELECT 1") + S()) == ["1", "Z"]
    if why == "aborted_transaction":
        assert _replies(w, Q("BEGIN")) == ["C", "Z"]
        assert _replies(w, Q("SELECT 1/0")) == ["E:22012", "Z"]
        assert _replies(w, Q("DEALLOCATE a")) == ["E:25P02", "Z"]
        assert _replies(w, Q("ROLLBACK")) == ["C", "Z"]
    else:
        w.send(P("bad", "SELEC 1") + H())
        t, payload = w.recv_msg()
        assert t == "E" and pgwire.parse_error_fields(payload)["C"] == "42601"
        assert _replies(w, Q("DEALLOCATE a") + S()) == ["Z"]
    assert _replies(w, B("", "a") + E() + S()) == ["2", "D", "C", "Z"]
    w.close()


def test_unknown_statement_in_aborted_transaction(target):
    """A Describe or Bind of a statement the client does not have, in an
    aborted transaction: PostgreSQL looks the statement up first and says
    26000. Regression: pgmux raised its 26000 through a DO block, which the
    aborted transaction refused with 25P02."""
    w, _ = target.wire_login()
    B, D, E, S = pgwire.bind, pgwire.describe, pgwire.execute, pgwire.sync
    assert _replies(w, Q("BEGIN")) == ["C", "Z"]
    assert _replies(w, Q("SELECT 1/0")) == ["E:22012", "Z"]
    got = [_replies(w, D("S", "nosuch") + S()), _replies(w, B("", "nosuch") + E() + S())]
    assert _replies(w, Q("ROLLBACK")) == ["C", "Z"]
    assert got == [["E:26000", "Z"], ["E:26000", "Z"]]
    w.close()
