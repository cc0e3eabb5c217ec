"""net/transport: the system calls a transaction costs, plain and over TLS
on both sides, and big messages and back-pressure when both sides are TLS.

The floor: one read and one write on each side per message, and no
epoll_ctl per transaction (the write event is added only while a socket
would block). Over TLS the same: the SSL runs on the connection's own
socket, with read-ahead, and no OpenSSL bufferevent re-arms its write event
around every message, as libevent 2.1's does."""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from harness import DB, HOST, PASSWORDS, PG_BINDIR
from test_server_tls import start_tls_pg
from test_tls import certs, tls_settings  # noqa: F401  (the certificates fixture)

TXNS = 1500


@pytest.fixture(scope="module")
def tls_pg(certs):  # noqa: F811
    server = start_tls_pg(certs, "server")
    yield server
    server.stop()


def strace_counts(pid, run, out):
    """Per-syscall call counts of PID's threads while RUN() runs."""
    st = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(pid),
                           "-e", "trace=read,recvfrom,recvmsg,write,writev,sendto,sendmsg,"
                           "epoll_ctl,ioctl"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5)  # attached to every thread
        run()
    finally:
        st.send_signal(signal.SIGINT)
        st.wait(30)
    counts = {}
    for line in out.read_text().splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
        if m and m.group(2) != "total":
            counts[m.group(2)] = int(m.group(1))
    return counts


def pgbench(mux, tmp_path, sslmode):
    script = tmp_path / "select1.sql"
    script.write_text("SELECT 1;\n")
    env = dict(os.environ, PGPASSWORD=PASSWORDS["app"], PGSSLMODE=sslmode)
    r = subprocess.run([str(PG_BINDIR / "pgbench"), "-n", "-f", str(script), "-c", "1", "-t",
                        str(TXNS), "-h", HOST, "-p", str(mux.port), "-U", "app", DB],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "number of transactions actually processed: %d/%d" % (TXNS, TXNS) in r.stdout


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.timeout(180)
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_system_calls_per_transaction(pg, tls_pg, pgmux, certs, tmp_path, tls):  # noqa: F811
    settings = dict(pool_size=1, log_level="warn")  # no log line per message: writes are data
    server = pg
    if tls:
        settings.update(tls_settings(certs, "require"), server_tls_sslmode="require")
        server = tls_pg
    db = {DB: {"host": HOST, "port": server.port, "dbname": DB, "pool_size": 1}}
    mux = pgmux(server=server, databases=db, **settings)
    pgbench(mux, tmp_path, "require" if tls else "disable")  # warm: the server exists
    c = strace_counts(mux.pid, lambda: pgbench(mux, tmp_path, "require" if tls else "disable"),
                      tmp_path / "strace.txt")
    # the run's login and its few messages are a rounding error over TXNS
    reads = sum(c.get(k, 0) for k in ("read", "recvfrom", "recvmsg")) / TXNS
    writes = sum(c.get(k, 0) for k in ("write", "writev", "sendto", "sendmsg")) / TXNS
    ctl = c.get("epoll_ctl", 0) / TXNS
    print("per transaction: reads %.2f writes %.2f epoll_ctl %.3f (%s)" % (reads, writes, ctl, c))
    assert reads <= 2.1, c
    assert writes <= 2.1, c
    assert ctl <= 0.05, c
    assert c.get("ioctl", 0) / TXNS <= 0.05, c  # no FIONREAD before reads
    if tls:
        # and the transaction really ran over TLS on both sides
        with mux.connect(sslmode="require") as conn:
            assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                                ).fetchone()[0] is True


@pytest.mark.timeout(120)
def test_big_messages_and_back_pressure_with_tls_on_both_sides(tls_pg, pgmux, certs):  # noqa: F811
    db = {DB: {"host": HOST, "port": tls_pg.port, "dbname": DB, "pool_size": 2}}
    mux = pgmux(server=tls_pg, databases=db, server_tls_sslmode="require",
                **tls_settings(certs, "require"))
    with mux.connect(sslmode="require") as c:
        # rows larger than a TLS record, and a result far past the 1 MiB
        # high-water mark, read slowly so that the client side blocks
        big = c.execute("SELECT repeat('z', 6000000)").fetchone()[0]
        assert big == "z" * 6000000
        cur = c.cursor(name="slow")
        with c.transaction():
            cur.execute("SELECT i, repeat(md5(i::text), 40) FROM generate_series(1, 60000) i")
            n = 0
            while True:
                rows = cur.fetchmany(5000)
                if not rows:
                    break
                n += len(rows)
                time.sleep(0.01)
            assert n == 60000
        rows = c.execute("SELECT i, repeat('y', 700) FROM generate_series(1, 30000) i").fetchall()
        assert len(rows) == 30000 and rows[-1] == (30000, "y" * 700)
        c.execute("CREATE TEMP TABLE t (a int, b text)")
        with c.cursor().copy("COPY t FROM STDIN") as cp:
            for i in range(30000):
                cp.write_row((i, "v" * 300))
        assert c.execute("SELECT count(*), sum(length(b)) FROM t").fetchone() == (30000, 9000000)
        # a pipeline of many small messages in one burst
        with c.pipeline():
            curs = [c.execute("SELECT %s::int", (i,)) for i in range(500)]
        assert [k.fetchone()[0] for k in curs] == list(range(500))
        assert c.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                         ).fetchone()[0] is True
    # the server went back clean and serves the next client
    with mux.connect(sslmode="require") as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1
