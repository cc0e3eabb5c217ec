"""Shutdown: SIGTERM drains, SIGINT exits at once."""

import signal
import threading
import time

import psycopg
import pytest

import pgwire
from test_pooling import table_name


def login_possible(mux):
    """True if a brand-new client can log in and run a query."""
    try:
        w, _ = mux.wire_login(timeout=3)
    except (ConnectionRefusedError, pgwire.ConnectionClosed, pgwire.PgError, OSError):
        return False
    try:
        return w.check_query("SELECT 1").scalar() == "1"
    except (pgwire.ConnectionClosed, pgwire.PgError, OSError):
        return False
    finally:
        w.close()


def fatal_codes_received(w, timeout=3.0):
    """SQLSTATEs of the errors an idle client gets (asking with a query if
    nothing arrives by itself), and whether the connection was closed."""
    msgs, closed = w.read_until_close(timeout)
    if not msgs and not closed:
        w.try_send(pgwire.query("SELECT 1"))
        more, closed = w.read_until_close(timeout)
        msgs += more
    return [e.get("C") for e in pgwire.errors_in(msgs)], closed, msgs


@pytest.mark.timeout(60)
@pytest.mark.threads
def test_sigterm_drains_running_transaction(pg, pgmux):
    mux = pgmux(shutdown_timeout=30)
    tbl = table_name("drain")
    with mux.connect() as c:
        c.execute("CREATE TABLE %s (x int)" % tbl)
    try:
        a = mux.connect(autocommit=False)
        idle, _ = mux.wire_login()
        a.execute("INSERT INTO %s VALUES (1)" % tbl)
        result = {}

        def finish_transaction():
            try:
                a.execute("SELECT pg_sleep(1)")
                a.commit()
                result["committed"] = time.monotonic()
            except Exception as e:
                result["error"] = e

        t = threading.Thread(target=finish_transaction, daemon=True)
        t.start()
        time.sleep(0.3)
        t_sig = time.monotonic()
        mark = mux.log_mark()
        mux.signal(signal.SIGTERM)
        time.sleep(0.2)
        assert not login_possible(mux), "a new client logged in after SIGTERM"
        codes, closed, msgs = fatal_codes_received(idle)
        assert "57P01" in codes, "idle client got %r" % msgs
        assert closed, "idle client not disconnected after SIGTERM"
        t.join(10)
        assert "error" in result or "committed" in result, "transaction never finished"
        assert "error" not in result, "the draining transaction failed: %r" % result["error"]
        rc = mux.wait_exit(15)
        t_exit = time.monotonic()
        assert rc is not None, "pgmux still running 15 s after SIGTERM with no active clients"
        assert rc == 0, "pgmux exited with %d after SIGTERM" % rc
        assert t_exit - t_sig < 10, "exit took %.1fs (shutdown_timeout=30)" % (t_exit - t_sig)
        mux.wait_for_log(r"event=shutdown_begin\b", since=mark, timeout=1)
        mux.wait_for_log(r"event=shutdown_done\b", since=mark, timeout=1)
        a.close()
        idle.close()
        # the drained transaction really committed
        assert pg.sql("SELECT count(*) FROM %s" % tbl, dbname="appdb")[0][0] == 1
    finally:
        pg.sql("DROP TABLE IF EXISTS %s" % tbl, dbname="appdb")


@pytest.mark.timeout(30)
@pytest.mark.threads
def test_sigterm_gives_up_after_shutdown_timeout(pgmux):
    mux = pgmux(shutdown_timeout=2)
    with mux.connect() as a:
        a.execute("BEGIN")
        a.execute("SELECT 1")
        t0 = time.monotonic()
        mux.signal(signal.SIGTERM)
        rc = mux.wait_exit(10)
        elapsed = time.monotonic() - t0
        assert rc is not None, "pgmux ignored shutdown_timeout=2 with a transaction open"
        assert rc >= 0, "pgmux died from signal %d" % -rc
        assert 1.5 <= elapsed <= 6, "exited %.1fs after SIGTERM with shutdown_timeout=2" % elapsed
        with pytest.raises(psycopg.OperationalError):
            a.execute("SELECT 1")


@pytest.mark.timeout(30)
def test_sigint_exits_at_once(pg, pgmux):
    mux = pgmux()
    busy = mux.connect()
    idle = mux.connect()
    try:
        busy.execute("BEGIN")
        busy.execute("SELECT 1")
        idle.execute("SELECT 1")
        assert pg.count_backends() >= 1
        t0 = time.monotonic()
        mux.signal(signal.SIGINT)
        rc = mux.wait_exit(5)
        elapsed = time.monotonic() - t0
        assert rc is not None, "pgmux still running 5 s after SIGINT"
        assert rc == 0 or rc == -signal.SIGINT, "exit status %d after SIGINT" % rc
        assert elapsed < 1.5, "SIGINT exit took %.2fs" % elapsed
        assert not mux.log_lines(r"AddressSanitizer|runtime error")
        # its server connections are gone too
        assert pg.wait_backends(lambda n: n == 0, timeout=5) == 0
    finally:
        busy.close()
        idle.close()
