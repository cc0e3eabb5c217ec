"""Lifecycle behaviour a DBA relies on: client and server timeouts,
min_pool_size, unreachable or refusing servers, settings isolation after a
client's SET, one server handed between workers, the command line (--check,
-d) and SIGTERM in session mode.

Every test asserts what a user sees (SQLSTATEs, pg_stat_activity, backend
pids, exit codes, log events) and stays well under 15 s.
"""

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import harness
import pgwire
from harness import DB, HOST, PASSWORDS, PGMUX_BIN, ActivitySampler, free_port, port_accepts
from test_pooling import quiet_pool


# --------------------------------------------------------------------------
# helpers


def first_error(mux, dbname=DB, user="app", password=None, timeout=6.0):
    """Log in as USER to DBNAME and, if that works, run SELECT 1. Returns
    (error fields or None, seconds from the TCP connect to the error, where
    'login' or 'query', all messages seen)."""
    if password is None:
        password = PASSWORDS.get(user)
    t0 = time.monotonic()
    w = mux.wire(timeout=timeout)
    try:
        try:
            w.login(user, dbname, password=password)
        except pgwire.PgError as e:
            return e.fields, time.monotonic() - t0, "login", e.messages
        w.send(pgwire.query("SELECT 1"))
        msgs, _ = w.read_until_close(timeout)
        errs = pgwire.errors_in(msgs)
        return (errs[0] if errs else None), time.monotonic() - t0, "query", msgs
    finally:
        w.close()


def server_log(mux, mark):
    """The server_* log lines since MARK, for assertion messages."""
    return "\n".join(mux.log_lines(r"event=server_", since=mark)[-40:])


def wait_gone(pg, pid, timeout):
    """Wait until backend PID is no longer in pg_stat_activity; returns the
    time.monotonic() at which it was first seen gone, or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if not pg.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
            return time.monotonic()
        time.sleep(0.05)
    return None


# --------------------------------------------------------------------------
# 1. idle_client_timeout


@pytest.mark.timeout(30)
def test_idle_client_timeout_closes_idle_client_not_idle_in_transaction(pgmux):
    mux = pgmux(idle_client_timeout=2)
    mark = mux.log_mark()

    # idle in transaction: must survive
    tx, _ = mux.wire_login()
    assert tx.check_query("BEGIN").status == "T"
    t_tx = time.monotonic()

    # a client that keeps working: must survive too
    busy, _ = mux.wire_login()

    idle, _ = mux.wire_login(timeout=8)
    t_idle = time.monotonic()
    result = {}

    def watch_idle():
        msgs, closed = idle.read_until_close(timeout=7)
        result["elapsed"] = time.monotonic() - t_idle
        result["msgs"], result["closed"] = msgs, closed

    watcher = threading.Thread(target=watch_idle, daemon=True)
    watcher.start()

    while watcher.is_alive() or time.monotonic() - t_tx < 5.0:
        assert busy.check_query("SELECT 1").scalar() == "1"
        time.sleep(0.5)
    watcher.join(1)

    errs = pgwire.errors_in(result["msgs"])
    assert result["closed"], \
        "idle client not disconnected within 7 s (idle_client_timeout=2); got %r" % result["msgs"]
    assert [e.get("C") for e in errs] == ["57P05"], "idle client got %r" % errs
    assert errs[0].get("S") == "FATAL" and errs[0].get("V", "FATAL") == "FATAL", errs[0]
    assert 1.5 <= result["elapsed"] <= 4.5, \
        "idle client closed after %.2fs (idle_client_timeout=2)" % result["elapsed"]
    mux.wait_for_log(r"event=client_close\b.*\breason=idle_client_timeout\b", since=mark,
                     timeout=1)

    # the client idle in a transaction for > 2x the timeout is still there
    assert time.monotonic() - t_tx >= 5.0
    early = tx.pending(timeout=0.2)
    assert not early and not tx.eof, \
        "client idle in transaction got %r (eof=%s)" % (early, tx.eof)
    res = tx.check_query("SELECT 1")
    assert res.scalar() == "1" and res.status == "T", res.messages
    assert tx.check_query("COMMIT").status == "I"
    # exactly one client was closed for idleness
    assert len(mux.log_lines(r"event=client_close\b.*\breason=idle_client_timeout\b",
                             since=mark)) == 1, mux.log_since(mark)
    tx.close()
    busy.close()
    idle.close()


# --------------------------------------------------------------------------
# 2. server_idle_timeout


@pytest.mark.timeout(30)
def test_server_idle_timeout_closes_idle_server(pg, pgmux):
    quiet_pool(pg)
    mux = pgmux(server_idle_timeout=2, min_pool_size=0)
    mark = mux.log_mark()
    with mux.connect() as c:
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        t_idle = time.monotonic()
        backends = pg.backends()
        assert pid in [b[0] for b in backends], \
            "server pid %d not in pg_stat_activity for app: %r" % (pid, backends)
        gone = wait_gone(pg, pid, timeout=6)
        assert gone is not None, "idle server %d still connected 6 s after its last use " \
                                 "(server_idle_timeout=2); log:\n%s" % (pid, server_log(mux, mark))
        elapsed = gone - t_idle
        assert 1.5 <= elapsed <= 4.5, \
            "idle server closed %.2fs after its last use (server_idle_timeout=2); log:\n%s" \
            % (elapsed, server_log(mux, mark))
        assert pg.count_backends() == 0, (pg.backends(), server_log(mux, mark))
        mux.wait_for_log(r"event=server_close\b.*\bbe_pid=%d\b.*\breason=server_idle_timeout\b"
                         % pid, since=mark, timeout=1)
        # the same client goes on working, on a new server
        pid2 = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert pid2 != pid
        assert c.execute("SELECT 40 + 2").fetchone()[0] == 42


# --------------------------------------------------------------------------
# 3. server_lifetime


@pytest.mark.timeout(30)
def test_server_lifetime_replaces_old_idle_server(pgmux):
    mux = pgmux(server_lifetime=2, pool_size=1)
    mark = mux.log_mark()
    with mux.connect() as c:
        p1 = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        time.sleep(3)
        p2 = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert p1 != p2, "same backend %d after 3 s with server_lifetime=2; log:\n%s" \
            % (p1, server_log(mux, mark))
        mux.wait_for_log(r"event=server_close\b.*\bbe_pid=%d\b.*\breason=server_lifetime\b"
                         % p1, since=mark, timeout=1)


@pytest.mark.timeout(30)
def test_server_lifetime_waits_for_transaction_end(pgmux):
    """A server past its lifetime is not taken from a running transaction;
    it is closed when released."""
    mux = pgmux(server_lifetime=2, pool_size=1)
    mark = mux.log_mark()
    with mux.connect(autocommit=False) as c:
        p1 = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        time.sleep(2.8)
        assert c.execute("SELECT pg_backend_pid()").fetchone()[0] == p1
        c.commit()
        p2 = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        c.commit()
        assert p2 != p1, "server %d, 2.8 s old with server_lifetime=2, was lent again " \
                         "after its transaction ended; log:\n%s" % (p1, server_log(mux, mark))
        mux.wait_for_log(r"event=server_close\b.*\bbe_pid=%d\b.*\breason=server_lifetime\b"
                         % p1, since=mark, timeout=1)


# --------------------------------------------------------------------------
# 4. min_pool_size


@pytest.mark.timeout(30)
def test_min_pool_size_keeps_servers_open(pg, pgmux):
    quiet_pool(pg)
    mux = pgmux(min_pool_size=2, pool_size=5)
    t0 = time.monotonic()
    with mux.connect() as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
    n = pg.wait_backends(lambda n: n >= 2, timeout=3.5 - (time.monotonic() - t0))
    assert n >= 2, "%d server connections for app %.1fs after the pool was created " \
                   "(min_pool_size=2)" % (n, time.monotonic() - t0)
    # they stay with no client connected
    time.sleep(1)
    n = pg.count_backends()
    assert 2 <= n <= 5, "%d server connections with no client (min_pool_size=2, " \
                        "pool_size=5)" % n


# --------------------------------------------------------------------------
# 5. server_connect_timeout, unreachable servers


@pytest.mark.timeout(30)
def test_server_connect_timeout_and_refused(pg, pgmux):
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blackhole.bind((HOST, 0))
        blackhole.listen(16)   # never accepts, never writes
        bh_port = blackhole.getsockname()[1]
        closed_port = free_port()
        dbs = {
            DB: {"host": HOST, "port": pg.port, "dbname": DB, "pool_size": 5},
            "x": {"host": HOST, "port": bh_port, "dbname": DB, "pool_size": 5},
            "y": {"host": HOST, "port": closed_port, "dbname": DB, "pool_size": 5},
        }
        mux = pgmux(server_connect_timeout=1, databases=dbs)

        mark = mux.log_mark()
        fields, elapsed, where, msgs = first_error(mux, dbname="x")
        assert fields is not None, "client of db x (silent server) got no error: %r" % msgs
        assert fields.get("C") == "08006", \
            "client of db x got %r (at %s) instead of 08006" % (fields, where)
        assert 0.8 <= elapsed <= 3.5, \
            "db x error after %.2fs (server_connect_timeout=1)" % elapsed
        mux.wait_for_log(r"event=server_login_failed\b.*\bdb=x\b", since=mark, timeout=2)
        mux.assert_serves()

        mark = mux.log_mark()
        fields, elapsed, where, msgs = first_error(mux, dbname="y")
        assert fields is not None, "client of db y (closed port) got no error: %r" % msgs
        assert fields.get("C") == "08006", \
            "client of db y got %r (at %s) instead of 08006" % (fields, where)
        assert elapsed <= 1.0, "db y (connection refused) error only after %.2fs" % elapsed
        mux.assert_serves()
    finally:
        blackhole.close()


# --------------------------------------------------------------------------
# 6. server login failure


WRONG_SERVER_PASSWORD = "not-the-server-pw-7f3a"


def test_server_login_failure_passes_sqlstate_and_hides_password(pgmux):
    userlist = dict(PASSWORDS)
    userlist["app"] = WRONG_SERVER_PASSWORD
    mux = pgmux(auth_type="trust", userlist=userlist)
    mark = mux.log_mark()
    fields, elapsed, where, msgs = first_error(mux, password=None)
    assert fields is not None, "client got no error with a wrong server password: %r" % msgs
    assert fields.get("C") == "28P01", "client got %r (at %s), expected 28P01" % (fields, where)
    assert WRONG_SERVER_PASSWORD not in repr(fields)
    mux.wait_for_log(r"event=server_login_failed\b.*\bsqlstate=28P01\b", since=mark, timeout=2)
    log = mux.log_text()
    assert WRONG_SERVER_PASSWORD not in log, "the server password appears in the log"
    assert pgwire.md5_password_hash(WRONG_SERVER_PASSWORD, "app") not in log
    # another user still works
    with mux.connect(user="app2", password="") as c:
        assert c.execute("SELECT current_user").fetchone()[0] == "app2"


# --------------------------------------------------------------------------
# 7. settings isolation after a client's SET


def _show(w, name):
    return w.check_query("SHOW %s" % name).scalar()


def _pid(w):
    return w.check_query("SELECT pg_backend_pid()").scalar()


def test_set_application_name_does_not_leak(pgmux):
    mux = pgmux(pool_mode="transaction", workers=2, pool_size=1)
    a, _ = mux.wire_login()
    b, _ = mux.wire_login(params={"application_name": "bclient"})
    c, _ = mux.wire_login()
    try:
        a.check_query("SET application_name = 'leaky'")
        assert a.check_query("SELECT 1").scalar() == "1"
        pid_a = _pid(a)
        got_b = _show(b, "application_name")
        assert got_b == "bclient", \
            "B (application_name=bclient at startup) sees %r after A's SET" % got_b
        got_c = _show(c, "application_name")
        assert got_c == "", "C (no application_name at startup) sees %r after A's SET" % got_c
        assert _pid(b) == _pid(c) == pid_a, "clients did not share the one server"
    finally:
        for w in (a, b, c):
            w.close()


def test_set_timezone_does_not_leak(pg, pgmux):
    direct, _ = pgwire.connect(HOST, pg.port, "app", DB, password=PASSWORDS["app"])
    with direct:
        server_default = _show(direct, "TimeZone")
    assert server_default != "Asia/Tokyo"
    mux = pgmux(pool_mode="transaction", workers=2, pool_size=1)
    a, _ = mux.wire_login()
    b, _ = mux.wire_login(params={"application_name": "bclient"})
    try:
        a.check_query("SET TimeZone = 'Asia/Tokyo'")
        assert a.check_query("SELECT 1").scalar() == "1"
        pid_a = _pid(a)
        got = _show(b, "TimeZone")
        assert got == server_default, \
            "B (no TimeZone at startup) sees %r after A's SET; server default is %r" \
            % (got, server_default)
        assert _pid(b) == pid_a, "clients did not share the one server"
    finally:
        a.close()
        b.close()


# --------------------------------------------------------------------------
# 8. one server handed between workers


@pytest.mark.timeout(60)
@pytest.mark.threads
def test_single_server_shared_across_workers(pg, pgmux):
    quiet_pool(pg)
    mux = pgmux(workers=2, pool_size=1)
    conns = [mux.connect(autocommit=False) for _ in range(20)]
    pids = set()
    errors = []
    lock = threading.Lock()
    start = threading.Barrier(len(conns))

    def run(conn):
        try:
            start.wait(10)
            for _ in range(20):
                pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
                conn.commit()
                with lock:
                    pids.add(pid)
        except Exception as e:  # reported below
            with lock:
                errors.append(repr(e))

    try:
        with ActivitySampler(pg, interval=0.05) as sampler:
            threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in conns]
            for t in threads:
                t.start()
            for t in threads:
                t.join(40)
            assert not any(t.is_alive() for t in threads), "clients still running after 40 s"
        assert not errors, "%d of 20 clients failed: %r" % (len(errors), errors[:3])
        assert sampler.error is None, sampler.error
        assert sampler.samples, "no pg_stat_activity samples taken"
        assert sampler.max <= 1, "up to %d server connections with pool_size=1" % sampler.max
        assert len(pids) == 1, "clients saw backends %r with pool_size=1" % sorted(pids)
    finally:
        for c in conns:
            c.close()


# --------------------------------------------------------------------------
# 9. command line


def run_cli(args, cwd=None, timeout=10):
    return subprocess.run([PGMUX_BIN] + list(args), capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)


def test_cli_version_help_and_usage():
    r = run_cli(["--version"])
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert r.stdout.startswith("pgmux "), r.stdout
    r = run_cli(["--help"])
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "--check" in r.stdout, r.stdout
    r = run_cli([])
    assert r.returncode != 0, "no arguments: exit 0; stdout=%r" % r.stdout
    assert "usage" in (r.stdout + r.stderr).lower(), (r.stdout, r.stderr)


def has_line_ref(text, basename, line):
    return re.search(r"(^|[/\s])%s:%d:" % (re.escape(basename), line), text, re.M) is not None


def test_cli_check(pg, tmp_path):
    good = harness.Pgmux(pg, tmp_path / "good")
    r = run_cli(["--check", str(good.config_path)])
    assert r.returncode == 0, "--check on a good config: %d\n%s%s" % (
        r.returncode, r.stdout, r.stderr)

    (tmp_path / "bad.ini").write_text(
        "[pgmux]\n"                     # 1
        "listen_addr = 127.0.0.1\n"     # 2
        "no_such_setting = 1\n"         # 3
        "auth_type = trust\n"           # 4
        "listen_port = 70000\n"         # 5
        "\n"                            # 6
        "[database.appdb]\n"            # 7
        "host = 127.0.0.1\n"            # 8
        "port = %d\n" % pg.port)        # 9
    r = run_cli(["--check", "bad.ini"], cwd=str(tmp_path))
    assert r.returncode == 1, "--check bad.ini exited %d\nstdout=%r\nstderr=%r" % (
        r.returncode, r.stdout, r.stderr)
    assert has_line_ref(r.stderr, "bad.ini", 3), "unknown key on line 3 not reported:\n" + r.stderr
    assert has_line_ref(r.stderr, "bad.ini", 5), "bad port on line 5 not reported:\n" + r.stderr

    (tmp_path / "noauth.ini").write_text(
        "[pgmux]\n"                           # 1
        "listen_addr = 127.0.0.1\n"           # 2
        "listen_port = 6432\n"                # 3
        "auth_type = scram-sha-256\n"         # 4
        "auth_file = does-not-exist.txt\n"    # 5
        "\n"                                  # 6
        "[database.appdb]\n"                  # 7
        "host = 127.0.0.1\n"                  # 8
        "port = %d\n" % pg.port)              # 9
    r = run_cli(["--check", str(tmp_path / "noauth.ini")])
    assert r.returncode == 1, "--check with a missing auth_file exited %d\n%s%s" % (
        r.returncode, r.stdout, r.stderr)
    assert has_line_ref(r.stderr, "noauth.ini", 5), \
        "missing auth_file not reported at noauth.ini:5:\n" + r.stderr


def find_pids_with_arg(arg):
    """Live (non-zombie) processes whose command line contains ARG."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if arg.encode() in argv and state != "Z":
            out.append(int(d.name))
    return out


@pytest.mark.timeout(30)
def test_cli_daemon_mode(pg, tmp_path):
    inst = harness.Pgmux(pg, tmp_path / "daemon")
    cfg = str(inst.config_path)
    logf = open(tmp_path / "daemon.log", "wb")
    try:
        t0 = time.monotonic()
        r = subprocess.run([PGMUX_BIN, "-d", cfg], stdin=subprocess.DEVNULL, stdout=logf,
                           stderr=logf, timeout=10, cwd=str(inst.dir))
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, "pgmux -d exited %d; log:\n%s" % (
            r.returncode, (tmp_path / "daemon.log").read_text())
        assert elapsed < 3, "pgmux -d took %.1fs to return" % elapsed
        deadline = time.monotonic() + 10
        while not port_accepts(inst.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert port_accepts(inst.port), "daemon not listening on %d; log:\n%s" % (
            inst.port, (tmp_path / "daemon.log").read_text())
        with inst.connect() as c:
            assert c.execute("SELECT current_user").fetchone()[0] == "app"
        assert find_pids_with_arg(cfg), "no process with %s in its command line" % cfg
    finally:
        for pid in find_pids_with_arg(cfg):
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while find_pids_with_arg(cfg) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = find_pids_with_arg(cfg)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        logf.close()
    assert not left, "daemon %r did not exit within 5 s of SIGINT" % left
    log = (tmp_path / "daemon.log").read_text(errors="replace")
    for secret in harness.secrets_that_must_not_leak():
        assert secret not in log, "a password/secret appears in the daemon's log"


# --------------------------------------------------------------------------
# 10. SIGTERM in session mode


@pytest.mark.timeout(30)
@pytest.mark.threads
def test_sigterm_closes_idle_session_client(pgmux):
    mux = pgmux(pool_mode="session", shutdown_timeout=30)
    w, _ = mux.wire_login()
    try:
        assert w.check_query("SELECT 1").scalar() == "1"
        t0 = time.monotonic()
        mux.signal(signal.SIGTERM)
        msgs, closed = w.read_until_close(timeout=3)
        codes = [e.get("C") for e in pgwire.errors_in(msgs)]
        assert "57P01" in codes, "idle session client got %r" % msgs
        assert closed, "idle session client not disconnected within 3 s of SIGTERM"
        rc = mux.wait_exit(max(0.1, 3 - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0
        assert rc is not None, "pgmux still running 3 s after SIGTERM with only an idle " \
                               "session client"
        assert rc == 0, "pgmux exited with %d after SIGTERM" % rc
        assert elapsed <= 3.0, elapsed
    finally:
        w.close()
