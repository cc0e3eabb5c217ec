"""Pooling behaviour: caps, transaction and session modes, isolation of
settings, timeouts, and what happens when either side goes away."""

import hashlib
import os
import re
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

import pgwire
from harness import DB, HOST, PASSWORDS, PG_BINDIR, ActivitySampler


def table_name(prefix):
    return "%s_%s" % (prefix, uuid.uuid4().hex[:10])


def quiet_pool(pg):
    """Wait until earlier tests' server connections have gone."""
    n = pg.wait_backends(lambda n: n == 0, timeout=10)
    assert n == 0, "%d app backends still connected from earlier tests" % n


# --------------------------------------------------------------------------
# pgbench: many clients, few servers


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["simple", "extended"])
@pytest.mark.parametrize("script", ["select-only", "tpcb"])
@pytest.mark.threads
def test_pgbench_50_clients_over_pool_of_5(pg, pgmux, mode, script):
    quiet_pool(pg)
    mux = pgmux(pool_size=5)
    args = [str(PG_BINDIR / "pgbench"), "-h", HOST, "-p", str(mux.port), "-U", "app",
            "-n", "-c", "50", "-j", "2", "-T", "10", "-M", mode]
    if script == "select-only":
        args.append("-S")
    args.append(DB)
    env = dict(os.environ, PGPASSWORD=PASSWORDS["app"])
    with ActivitySampler(pg) as sampler:
        r = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, "pgbench exited %d:\n%s" % (r.returncode, out[-3000:])
    assert "aborted" not in out, out[-3000:]
    m = re.search(r"number of failed transactions: (\d+)", out)
    assert m and int(m.group(1)) == 0, out[-3000:]
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    assert m and int(m.group(1)) > 0, out[-3000:]
    assert sampler.error is None, sampler.error
    assert sampler.max >= 1, "the sampler never saw a pgmux server connection"
    assert sampler.max <= 5, "pgmux opened %d server connections, pool_size is 5" % sampler.max


# --------------------------------------------------------------------------
# COPY and pipelines


@pytest.mark.timeout(90)
def test_copy_in_and_out_10mb(mux):
    tbl = table_name("copy")
    nrows = 100_000
    lines = []
    for i in range(nrows):
        h = hashlib.sha256(str(i).encode()).hexdigest()
        lines.append("%d\t%s%s" % (i, h, "y" * 36))
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) > 10 * 1000 * 1000
    with mux.connect() as c:
        c.execute("CREATE TABLE %s (id int PRIMARY KEY, payload text)" % tbl)
        try:
            with c.cursor() as cur:
                with cur.copy("COPY %s FROM STDIN" % tbl) as cp:
                    for off in range(0, len(data), 65536):
                        cp.write(data[off:off + 65536])
                assert cur.rowcount == nrows
            count, digest = c.execute(
                "SELECT count(*), md5(string_agg(id || E'\\t' || payload, E'\\n' ORDER BY id)) "
                "FROM %s" % tbl).fetchone()
            assert count == nrows
            assert digest == hashlib.md5("\n".join(lines).encode()).hexdigest()
            out = bytearray()
            with c.cursor() as cur:
                with cur.copy("COPY (SELECT * FROM %s ORDER BY id) TO STDOUT" % tbl) as cp:
                    for block in cp:
                        out += block
            assert len(out) == len(data)
            assert hashlib.sha256(out).hexdigest() == hashlib.sha256(data).hexdigest()
            # the connection is still usable afterwards
            assert c.execute("SELECT 1").fetchone()[0] == 1
        finally:
            c.execute("DROP TABLE %s" % tbl)


class Competitor:
    """A thread running short queries in a loop on its own connection."""

    def __init__(self, mux, sql="SELECT pg_backend_pid()"):
        self.mux, self.sql = mux, sql
        self.done = []              # (monotonic time of completion, result)
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            with self.mux.connect() as c:
                while not self._stop.is_set():
                    r = c.execute(self.sql).fetchone()[0]
                    self.done.append((time.monotonic(), r))
        except Exception as e:
            self.errors.append(e)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive(), "competitor thread hung"


@pytest.mark.parametrize("autocommit", [True, False])
def test_pipeline_of_100_queries(pgmux, autocommit):
    mux = pgmux(pool_size=1)
    with Competitor(mux) as comp, mux.connect(autocommit=autocommit) as c:
        curs = []
        with c.pipeline():
            for i in range(100):
                cur = c.cursor()
                cur.execute("SELECT %s::int * 2, txid_current()", (i,))
                curs.append(cur)
        rows = [cur.fetchone() for cur in curs]
        assert [r[0] for r in rows] == [2 * i for i in range(100)]
        if not autocommit:
            # one explicit transaction: one xid, one backend
            assert len({r[1] for r in rows}) == 1
            c.commit()
        assert c.execute("SELECT 1").fetchone()[0] == 1
    assert not comp.errors, comp.errors
    assert comp.done, "the competing client never ran a query"


# --------------------------------------------------------------------------
# transaction and session modes


def test_transaction_mode_two_clients_alternate_on_one_server(pgmux):
    mux = pgmux(pool_size=1)
    tbl = table_name("alt")
    with mux.connect() as setup:
        setup.execute("CREATE TABLE %s (who text, i int)" % tbl)
    pids = set()
    try:
        with mux.connect(autocommit=False) as a, mux.connect(autocommit=False) as b:
            for i in range(30):
                for who, conn in (("a", a), ("b", b)):
                    conn.execute("INSERT INTO %s VALUES (%%s, %%s)" % tbl, (who, i))
                    n, pid = conn.execute(
                        "SELECT count(*) FILTER (WHERE who = %%s), pg_backend_pid() FROM %s"
                        % tbl, (who,)).fetchone()
                    assert n == i + 1
                    pids.add(pid)
                    conn.commit()
        assert len(pids) == 1, "pool_size=1 but clients saw backends %r" % pids
    finally:
        with mux.connect() as c:
            assert c.execute("SELECT count(*) FROM %s" % tbl).fetchone()[0] == 60
            c.execute("DROP TABLE %s" % tbl)


def test_session_mode_resets_with_discard_all(pgmux):
    mux = pgmux(pool_mode="session", pool_size=1)
    with mux.connect() as a:
        pid_a = a.execute("SELECT pg_backend_pid()").fetchone()[0]
        a.execute("SET work_mem = '7MB'")
        a.execute("CREATE TEMP TABLE session_tmp (x int)")
        a.execute("PREPARE session_ps AS SELECT 1")
        # session mode: the same backend for every transaction of the session
        for _ in range(3):
            assert a.execute("SELECT pg_backend_pid()").fetchone()[0] == pid_a
        assert a.execute("SHOW work_mem").fetchone()[0] == "7MB"
    with mux.connect() as b:
        pid_b = b.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert pid_b == pid_a, "the server was not reused (pool_size=1)"
        assert b.execute("SHOW work_mem").fetchone()[0] == "4MB"
        assert b.execute("SELECT count(*) FROM pg_class WHERE relname = 'session_tmp' "
                         "AND relpersistence = 't'").fetchone()[0] == 0
        assert b.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0


@pytest.mark.threads
def test_session_mode_second_client_waits_for_the_first(pgmux):
    mux = pgmux(pool_mode="session", pool_size=1)
    result = {}
    with mux.connect() as a:
        a.execute("SELECT 1")

        def run_b():
            with mux.connect() as b:
                result["v"] = b.execute("SELECT 2").fetchone()[0]
                result["t"] = time.monotonic()

        t = threading.Thread(target=run_b, daemon=True)
        t.start()
        time.sleep(0.5)
        assert "v" not in result, "client B got a server while A held the only one"
        released = time.monotonic()
    t.join(10)
    assert result.get("v") == 2
    assert result["t"] >= released


CLIENT_SETTINGS = {
    "a": {"TimeZone": "Asia/Tokyo", "application_name": "client-a",
          "DateStyle": "SQL, DMY", "search_path": "schema_a, public"},
    "b": {"TimeZone": "America/New_York", "application_name": "client-b",
          "DateStyle": "ISO, YMD", "search_path": "schema_b"},
}


def test_startup_settings_isolated_between_clients(pgmux):
    mux = pgmux(pool_size=1)
    conns = {}
    try:
        for who, params in CLIENT_SETTINGS.items():
            c, res = mux.wire_login(params=params)
            conns[who] = c
            for k in ("TimeZone", "application_name", "DateStyle"):
                assert res.params.get(k) == params[k], \
                    "client %s: ParameterStatus %s=%r, asked for %r" % (
                        who, k, res.params.get(k), params[k])
        pids = set()
        for i in range(40):
            for who, c in conns.items():
                want = CLIENT_SETTINGS[who]
                row = c.check_query(
                    "SELECT current_setting('TimeZone'), current_setting('application_name'), "
                    "current_setting('DateStyle'), current_setting('search_path'), "
                    "pg_backend_pid()").rows[0]
                got = dict(zip(["TimeZone", "application_name", "DateStyle", "search_path"],
                               row[:4]))
                assert got == want, "round %d client %s sees %r" % (i, who, got)
                pids.add(row[4])
        assert len(pids) == 1, pids
    finally:
        for c in conns.values():
            c.close()


def test_application_name_isolated_with_psycopg(pgmux):
    mux = pgmux(pool_size=1)
    with mux.connect(application_name="psy-a") as a, \
            mux.connect(application_name="psy-b") as b:
        for _ in range(20):
            assert a.execute("SHOW application_name").fetchone()[0] == "psy-a"
            assert b.execute("SHOW application_name").fetchone()[0] == "psy-b"


# --------------------------------------------------------------------------
# limits


@pytest.mark.threads
def test_borrow_timeout(pgmux):
    mux = pgmux(pool_size=1, connection_borrow_timeout=1)
    mark = mux.log_mark()
    waiter, _ = mux.wire_login()
    with waiter, mux.connect() as other, mux.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        # raw client: the exact ErrorResponse
        t0 = time.monotonic()
        waiter.send(pgwire.query("SELECT 1"))
        msgs = []
        while True:
            t, p = waiter.recv_msg(timeout=5)
            msgs.append((t, p))
            if t in "EZ":
                break
        elapsed = time.monotonic() - t0
        assert msgs[-1][0] == "E", "expected an ErrorResponse, got %r" % msgs
        err = pgwire.parse_error_fields(msgs[-1][1])
        assert err.get("C") == "53300", err
        assert "appdb" in err.get("M", "") and "app" in err["M"], \
            "message does not name the pool: %r" % err
        assert 0.8 <= elapsed <= 2.5, "borrow timeout fired after %.2fs" % elapsed
        # psycopg: the user sees the message naming the pool
        t0 = time.monotonic()
        with pytest.raises(psycopg.Error) as ei:
            other.execute("SELECT 1")
        assert "appdb" in str(ei.value), str(ei.value)
        assert 0.8 <= time.monotonic() - t0 <= 2.5
        # the holder is untouched
        assert holder.execute("SELECT 2").fetchone()[0] == 2
        holder.execute("COMMIT")
    mux.wait_for_log(r"event=pool_borrow_timeout\b.*\bdb=appdb\b.*\buser=app\b", since=mark)
    mux.assert_serves()


def test_max_client_conn(pgmux):
    mux = pgmux(max_client_conn=2)
    time.sleep(0.2)     # let pgmux see the harness's port probe close
    mark = mux.log_mark()
    a = mux.connect()
    b = mux.connect()
    try:
        # several attempts, so that both workers get to refuse one
        for _ in range(4):
            with pytest.raises(pgwire.PgError) as ei:
                w, _ = mux.wire_login()
                w.close()
            assert ei.value.sqlstate == "53300", ei.value.fields
            assert "too many clients" in ei.value.message.lower(), ei.value.fields
        with pytest.raises(psycopg.OperationalError) as ei:
            mux.connect()
        assert "too many clients" in str(ei.value)
        assert a.execute("SELECT 1").fetchone()[0] == 1
        mux.wait_for_log(r"event=too_many_clients\b", since=mark)
    finally:
        a.close()
    # a slot is free again (pgmux may take a moment to notice the close)
    deadline = time.monotonic() + 3
    while True:
        try:
            with mux.connect() as c:
                assert c.execute("SELECT 3").fetchone()[0] == 3
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    b.close()


# --------------------------------------------------------------------------
# one side goes away


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_disconnect_mid_transaction(pg, pgmux, how):
    mux = pgmux(pool_size=1)
    tbl = table_name("dirty")
    with mux.connect() as c:
        c.execute("CREATE TABLE %s (x int)" % tbl)
    w, _ = mux.wire_login()
    w.check_query("BEGIN")
    res = w.check_query("INSERT INTO %s VALUES (1)" % tbl)
    assert res.status == "T"
    if how == "rst":
        w.abort()
    else:
        w.close()
    with mux.connect() as c:
        assert c.execute("SELECT txid_current_if_assigned()").fetchone()[0] is None, \
            "the next client was handed a server inside the old transaction"
        assert c.execute("SELECT count(*) FROM %s" % tbl).fetchone()[0] == 0
        c.execute("INSERT INTO %s VALUES (2)" % tbl)
        assert c.execute("SELECT count(*) FROM %s" % tbl).fetchone()[0] == 1
        c.execute("DROP TABLE %s" % tbl)
    # nothing is left idle in transaction
    states = [s for _, s, _ in pg.backends()]
    assert "idle in transaction" not in states, states


def test_client_disconnect_with_query_in_progress(pg, pgmux):
    mux = pgmux(pool_size=1)
    tbl = table_name("busy")
    with mux.connect() as c:
        c.execute("CREATE TABLE %s (x int)" % tbl)
    w, _ = mux.wire_login()
    w.check_query("BEGIN")
    w.check_query("INSERT INTO %s VALUES (1)" % tbl)
    w.send(pgwire.query("SELECT pg_sleep(3)"))
    time.sleep(0.2)
    w.abort()
    t0 = time.monotonic()
    with mux.connect() as c:
        assert c.execute("SELECT txid_current_if_assigned()").fetchone()[0] is None
        assert c.execute("SELECT count(*) FROM %s" % tbl).fetchone()[0] == 0
        c.execute("DROP TABLE %s" % tbl)
    assert time.monotonic() - t0 < 6


def test_server_killed_mid_transaction(pg, pgmux):
    mux = pgmux(pool_size=1)
    w, _ = mux.wire_login()
    w.check_query("BEGIN")
    pid = int(w.check_query("SELECT pg_backend_pid()").scalar())
    pg.terminate(pid)
    w.try_send(pgwire.query("SELECT 1"))
    msgs, closed = w.read_until_close(timeout=5)
    errs = pgwire.errors_in(msgs)
    assert any(e.get("C") == "08006" for e in errs), \
        "expected an 08006 ErrorResponse, got %r" % [(t, pgwire.parse_error_fields(p)
                                                      if t in "EN" else p) for t, p in msgs]
    assert closed, "pgmux kept the client connection open after its server died"
    with mux.connect() as c:
        new_pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert new_pid != pid
        assert c.execute("SELECT txid_current_if_assigned()").fetchone()[0] is None
