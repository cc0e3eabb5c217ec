"""Wire-protocol cases from PROTOCOL-NOTES.md, mostly through the raw client.

Where it helps, the same bytes are also sent to PostgreSQL directly and the
reply sequences compared: pgmux must be transparent."""

import threading
import time
import uuid

import psycopg
import pytest

import pgwire
from harness import DB, HOST, PASSWORDS
from test_pooling import Competitor, table_name

P, B, D, E, S, H = (pgwire.parse, pgwire.bind, pgwire.describe, pgwire.execute,
                    pgwire.sync, pgwire.flush)


def direct(pg):
    """A raw connection to PostgreSQL itself, for reference sequences."""
    c, _ = pgwire.connect(HOST, pg.port, "app", DB, password=PASSWORDS["app"])
    return c


def describe_msgs(msgs):
    out = []
    for t, p in msgs:
        out.append((t, pgwire.parse_error_fields(p).get("C")) if t in "EN" else t)
    return out


# --------------------------------------------------------------------------
# §1 extended protocol without Sync


def test_parse_describe_flush_holds_the_server(pgmux):
    """P D(S) H, a 200 ms pause while others want the only server, then
    B E S: the server must stay with this client the whole time."""
    mux = pgmux(pool_size=1)
    w, _ = mux.wire_login()
    with w, Competitor(mux) as c1, Competitor(mux) as c2:
        time.sleep(0.1)
        w.send(P("", "SELECT pg_backend_pid()") + D("S", "") + H())
        w.expect("1", "t", "T")
        held_from = time.monotonic()
        time.sleep(0.2)
        held_until = time.monotonic()
        w.send(B() + E() + S())
        res = w.read_until_ready()
        assert not res.errors, res.errors
        assert res.types() == ["2", "D", "C", "Z"], res.types()
        assert res.status == "I"
        during = [t for t, _ in c1.done + c2.done if held_from + 0.05 < t < held_until]
        assert not during, ("%d competing queries ran on the only server while this client "
                            "was between Flush and Sync" % len(during))
        time.sleep(0.1)
    assert c1.done and c2.done, "competitors never got the server back"
    assert not c1.errors and not c2.errors, c1.errors + c2.errors


def test_unnamed_portal_stays_on_same_backend(pgmux):
    """P B E H returns the backend pid, pause under competition (pool_size=2),
    then B E S on the same unnamed statement: same pid, no 26000."""
    mux = pgmux(pool_size=2)
    w, _ = mux.wire_login()
    with w, Competitor(mux) as c1, Competitor(mux) as c2, Competitor(mux) as c3:
        time.sleep(0.1)
        w.send(P("", "SELECT pg_backend_pid()") + B() + E() + H())
        msgs = w.expect("1", "2", "D", "C")
        pid1 = pgwire.parse_data_row(msgs[2][1])[0]
        time.sleep(0.2)
        w.send(B() + E() + S())
        res = w.read_until_ready()
        assert not res.errors, res.errors
        assert res.rows == [[pid1]], "backend changed inside one extended-protocol batch"
    for c in (c1, c2, c3):
        assert not c.errors, c.errors


def test_execute_max_rows_with_flush(pg, pgmux):
    mux = pgmux(pool_size=1)
    w, _ = mux.wire_login()
    with w, Competitor(mux) as comp:
        time.sleep(0.05)
        w.send(P("", "SELECT g FROM generate_series(1,3) g") + B() + D("P") + E(max_rows=1)
               + H())
        msgs = w.expect("1", "2", "T", "D", "s")
        values = [pgwire.parse_data_row(msgs[3][1])[0]]
        for _ in range(2):
            time.sleep(0.05)
            w.send(E(max_rows=1) + H())
            msgs = w.expect("D", "s")
            values.append(pgwire.parse_data_row(msgs[0][1])[0])
        assert values == ["1", "2", "3"]
        w.send(E(max_rows=1) + H())
        (_, tag), = w.expect("C")
        assert pgwire.parse_command_complete(tag) == "SELECT 0"
        w.send(S())
        (_, z), = w.expect("Z")
        assert z == b"I"
    assert not comp.errors, comp.errors


# --------------------------------------------------------------------------
# §2 pipelines with errors


def segment(sql):
    return P("", sql) + B() + E() + S()


RUNTIME_ERROR = "SELECT 1 / (g - 3) FROM generate_series(3, 3) g"   # 22012 at Execute


def test_pipeline_error_in_the_middle(pg, pgmux):
    mux = pgmux(pool_size=1)
    pipeline = (segment("SELECT 1") + segment("SELECT 2") + segment(RUNTIME_ERROR)
                + segment("SELECT 4") + segment("SELECT 5"))
    with direct(pg) as ref:
        ref.send(pipeline)
        want = describe_msgs(ref.read_until_ready(count=5).messages)
    assert want.count("Z") == 5 and ("E", "22012") in want
    w, _ = mux.wire_login()
    with w, Competitor(mux) as comp:
        w.send(pipeline)
        res = w.read_until_ready(count=5)
        got = describe_msgs(res.messages)
        assert got == want
        assert [r[0] for r in res.rows] == ["1", "2", "4", "5"]
        extra = w.pending(0.3)
        assert not extra, "messages after the last ReadyForQuery: %r" % describe_msgs(extra)
        assert w.check_query("SELECT 6").scalar() == "6"
    assert not comp.errors


def test_pipeline_error_inside_explicit_transaction(pg, pgmux):
    mux = pgmux(pool_size=1)
    pipeline = (segment("SELECT 1") + segment(RUNTIME_ERROR) + segment("SELECT 3")
                + segment("SELECT 4"))

    def run(conn):
        seq = describe_msgs(conn.simple_query("BEGIN").messages)
        conn.send(pipeline)
        res = conn.read_until_ready(count=4)
        seq += describe_msgs(res.messages)
        seq += describe_msgs(conn.simple_query("ROLLBACK").messages)
        return seq, res

    with direct(pg) as ref:
        want, _ = run(ref)
    assert ("E", "25P02") in want
    w, _ = mux.wire_login()
    with w, Competitor(mux) as comp:
        got, res = run(w)
        assert got == want
        zs = [p for t, p in res.messages if t == "Z"]
        assert zs == [b"T", b"E", b"E", b"E"]
        assert w.pending(0.3) == []
        assert w.check_query("SELECT 7").status == "I"
    assert not comp.errors


# --------------------------------------------------------------------------
# §10 transaction status from ReadyForQuery


def test_select_then_begin_keeps_the_link(pgmux):
    mux = pgmux(pool_size=2)
    w, _ = mux.wire_login()
    with w, Competitor(mux) as c1, Competitor(mux) as c2, Competitor(mux) as c3:
        res = w.check_query("SELECT 1; BEGIN")
        assert res.status == "T"
        seen = set()
        for _ in range(5):
            time.sleep(0.03)
            row = w.check_query("SELECT txid_current(), pg_backend_pid(), now()").rows[0]
            seen.add(tuple(row))
        assert len(seen) == 1, "statements after 'SELECT 1; BEGIN' ran in %d different " \
                               "transactions/backends: %r" % (len(seen), seen)
        assert w.check_query("COMMIT").status == "I"
    for c in (c1, c2, c3):
        assert not c.errors, c.errors


def test_begin_in_multi_statement_query_then_client_dies(pgmux):
    mux = pgmux(pool_size=1)
    tbl = table_name("multi")
    with mux.connect() as c:
        c.execute("CREATE TABLE %s (x int)" % tbl)
    w, _ = mux.wire_login()
    res = w.check_query("BEGIN; INSERT INTO %s VALUES (1); SELECT 1" % tbl)
    assert res.status == "T"
    w.abort()
    w2, _ = mux.wire_login()
    with w2:
        res = w2.check_query("SELECT txid_current_if_assigned(), (SELECT count(*) FROM %s)"
                             % tbl)
        assert res.rows == [[None, "0"]], res.rows
        assert res.status == "I"
    with mux.connect() as c:
        c.execute("DROP TABLE %s" % tbl)


# --------------------------------------------------------------------------
# §6 asynchronous messages


def test_notice_and_parameter_status_forwarded(pgmux):
    mux = pgmux(pool_size=1)
    w, _ = mux.wire_login()
    with w:
        res = w.check_query("SET application_name = 'renamed-app'")
        assert res.params.get("application_name") == "renamed-app", res.types()
        assert res.types().index("S") < res.types().index("Z")
        res = w.check_query("DO $$BEGIN RAISE NOTICE 'hello from the pgmux test'; END$$")
        assert [n.get("M") for n in res.notices] == ["hello from the pgmux test"]
        assert res.types() == ["N", "C", "Z"], res.types()
    # the same through psycopg (extended protocol)
    notices = []
    with mux.connect() as c:
        c.add_notice_handler(lambda d: notices.append(d.message_primary))
        c.execute("DO $$BEGIN RAISE NOTICE 'psycopg notice'; END$$")
        c.execute("SET application_name = 'psy-renamed'")
        assert c.info.parameter_status("application_name") == "psy-renamed"
    assert notices == ["psycopg notice"]


def test_idle_pooled_server_terminated(pg, pgmux):
    mux = pgmux(pool_size=1)
    w, _ = mux.wire_login()
    with w:
        pid1 = w.check_query("SELECT pg_backend_pid()").scalar()
        pg.terminate(int(pid1))
        # the dying backend's FATAL must not reach this (unlinked) client
        stray = w.pending(0.3)
        assert stray == [], "forwarded from an idle server: %r" % describe_msgs(stray)
        res = w.simple_query("SELECT pg_backend_pid()")
        assert not res.errors, res.errors
        assert res.scalar() != pid1
    with mux.connect() as c:
        assert c.execute("SELECT 1").fetchone()[0] == 1


# --------------------------------------------------------------------------
# §9 startup


@pytest.mark.parametrize("minor,opts", [
    (2, {"_pq_.foo": "1"}),
    (2, {}),
    (0, {"_pq_.bar": "x"}),
])
def test_negotiate_protocol_version(pgmux, minor, opts):
    mux = pgmux()
    w = mux.wire()
    with w:
        res = w.login("app", DB, password=PASSWORDS["app"], params=opts, minor=minor)
        assert len(res.negotiate) == 1, res.types()
        assert res.negotiate[0] == (0, sorted(opts)), res.negotiate
        types = res.types()
        assert types.index("v") < types.index("R"), "NegotiateProtocolVersion after auth"
        q = w.check_query("SELECT 1")
        assert "v" not in q.types()
        for name in opts:
            assert w.check_query("SELECT current_setting('%s', true)" % name).scalar() is None


def test_negotiate_protocol_version_once_while_queued(pgmux):
    mux = pgmux(pool_size=1)
    out = {}
    with mux.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")

        def client():
            w = mux.wire(timeout=10)
            try:
                res = w.login("app", DB, password=PASSWORDS["app"],
                              params={"_pq_.foo": "1"}, minor=2)
                q = w.check_query("SELECT 42", timeout=10)
                out["types"] = res.types() + q.types()
                out["negotiate"] = res.negotiate
                out["value"] = q.scalar()
            except Exception as e:
                out["error"] = e
            finally:
                w.close()

        t = threading.Thread(target=client, daemon=True)
        t.start()
        time.sleep(0.4)
        holder.execute("COMMIT")
        t.join(15)
    assert "error" not in out, out.get("error")
    assert out["value"] == "42"
    assert out["types"].count("v") == 1, out["types"]
    assert out["negotiate"] == [(0, ["_pq_.foo"])]


@pytest.mark.parametrize("order", [("gss", "ssl"), ("ssl", "gss")])
def test_gssenc_and_ssl_requests_then_startup(mux, order):
    packets = {"gss": pgwire.gssenc_request(), "ssl": pgwire.ssl_request()}
    w = mux.wire()
    with w:
        for name in order:
            assert w.request_encryption(packets[name]) == b"N", name
        w.login("app", DB, password=PASSWORDS["app"])
        assert w.check_query("SELECT 5").scalar() == "5"


# --------------------------------------------------------------------------
# §7 cancel


@pytest.mark.threads
def test_cancel_pg_sleep_takes_effect_quickly(mux):
    mark = mux.log_mark()
    with mux.connect() as c:
        # several rounds: cancel connections land on either worker
        for _ in range(6):
            out = {}

            def run():
                try:
                    c.execute("SELECT pg_sleep(10)")
                    out["result"] = "completed"
                except psycopg.errors.QueryCanceled:
                    out["result"] = "canceled"
                except Exception as e:
                    out["result"] = e
                out["t"] = time.monotonic()

            t = threading.Thread(target=run, daemon=True)
            t.start()
            time.sleep(0.3)
            t_cancel = time.monotonic()
            c.cancel()
            t.join(5)
            assert out.get("result") == "canceled", out
            assert out["t"] - t_cancel < 1.0, "cancel took %.2fs" % (out["t"] - t_cancel)
            assert c.execute("SELECT 1").fetchone()[0] == 1
    # each cancel went to the backend, or, when it came while the client
    # waited for a server (the last one is not reused until its cancel
    # connection closes, and a slow build may still be logging in a new
    # one), was answered by pgmux itself; another worker may log it late
    deadline = time.monotonic() + 5
    while True:
        n = len(mux.log_lines(r"event=cancel_(forwarded|local)\b", since=mark))
        if n >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert n == 6, mux.log_lines(r"event=cancel_", since=mark)
    assert mux.log_lines(r"event=cancel_forwarded\b", since=mark)


@pytest.mark.threads
def test_raw_cancel_request_and_wrong_key(mux):
    w, res = mux.wire_login()
    pid, key = res.backend_key
    with w:
        # a wrong key must not cancel anything
        w.send(pgwire.query("SELECT pg_sleep(0.8)"))
        time.sleep(0.2)
        with mux.wire() as cw:
            cw.send(pgwire.cancel_request(pid, key ^ 0x5A5A5A5A))
            assert cw.wait_closed(3)
        r = w.read_until_ready(timeout=5)
        assert not r.errors, r.errors
        # the right key cancels, from a fresh connection each time
        for _ in range(4):
            w.send(pgwire.query("SELECT pg_sleep(10)"))
            time.sleep(0.2)
            t0 = time.monotonic()
            with mux.wire() as cw:
                cw.send(pgwire.cancel_request(pid, key))
                assert cw.wait_closed(3), "pgmux did not close the cancel connection"
            r = w.read_until_ready(timeout=5)
            assert [e.get("C") for e in r.errors] == ["57014"], r.errors
            assert time.monotonic() - t0 < 1.0
            assert r.status == "I"


@pytest.mark.timeout(120)
@pytest.mark.threads
def test_cancel_race_never_hits_the_next_client(pgmux):
    mux = pgmux(pool_size=1)
    iterations = 200
    b_errors, a_other = [], []
    a_canceled = [0]
    done = threading.Event()
    go = threading.Event()
    with mux.connect() as a, mux.connect() as b:

        def run_a():
            try:
                for _ in range(iterations):
                    go.set()
                    try:
                        a.execute("SELECT pg_sleep(0.01)")
                    except psycopg.errors.QueryCanceled:
                        a_canceled[0] += 1
            except Exception as e:
                a_other.append(e)
            finally:
                done.set()
                go.set()

        def cancel_a():
            while not done.is_set():
                go.wait(5)
                go.clear()
                if done.is_set():
                    break
                a.cancel()

        def run_b():
            while not done.is_set():
                try:
                    b.execute("SELECT pg_sleep(0.05)")
                except psycopg.errors.QueryCanceled as e:
                    b_errors.append(e)
                except Exception as e:
                    b_errors.append(e)
                    return

        threads = [threading.Thread(target=f, daemon=True) for f in (run_a, cancel_a, run_b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(100)
        assert not any(t.is_alive() for t in threads), "cancel race threads hung"
    assert not a_other, a_other
    assert not b_errors, "client B got %d errors, first: %r" % (len(b_errors), b_errors[0])
    # How many of A's queries were cancelled depends on timing; it is not a
    # verdict, but shown with -s to see that the race was exercised.
    print("cancel race: %d of %d A queries cancelled" % (a_canceled[0], iterations))


# --------------------------------------------------------------------------
# §5 COPY errors


def copy_rows(n, dup_at=10):
    rows = []
    for i in range(1, n + 1):
        rid = 1 if i == dup_at else i
        rows.append(b"%d\t%s\n" % (rid, b"z" * 90))
    return rows


class RawWaiter:
    """A logged-in raw client that, once started, runs SELECT 1 in a thread
    and records when the answer came (bounded by socket timeouts)."""

    def __init__(self, mux):
        self.w, _ = mux.wire_login(timeout=10)
        self.out = {}
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.w.send(pgwire.query("SELECT 1"))
            res = self.w.read_until_ready(timeout=8)
            self.out["t"] = time.monotonic()
            self.out["v"] = res.scalar() if res.rows else res.errors
        except Exception as e:
            self.out["error"] = e

    def start(self):
        self.thread.start()

    def join(self, timeout):
        self.thread.join(timeout)
        return self.out

    def close(self):
        self.w.close()


@pytest.mark.timeout(40)
def test_copy_duplicate_key_simple_query_releases_server(pg, pgmux):
    mux = pgmux(pool_size=1)
    tbl = table_name("copydup")
    with mux.connect() as c:
        c.execute("CREATE TABLE %s (id int PRIMARY KEY, pad text)" % tbl)
    data = b"".join(copy_rows(50_000))       # ~5 MB, duplicate key in row 10

    def run_copy(conn, after_g=None):
        conn.send(pgwire.query("COPY %s FROM STDIN" % tbl))
        conn.expect("G")
        if after_g:
            after_g()
        sent_all = True
        for off in range(0, len(data), 32768):
            if not conn.try_send(pgwire.copy_data(data[off:off + 32768])):
                sent_all = False
                break
        conn.try_send(pgwire.copy_done())
        t_done = time.monotonic()
        res = conn.read_until_ready(timeout=10)
        return res, sent_all, t_done

    with direct(pg) as ref:
        want_res, _, _ = run_copy(ref)
        want = describe_msgs(want_res.messages)
    assert want == [("E", "23505"), "Z"]

    w, _ = mux.wire_login(timeout=10)
    waiter = RawWaiter(mux)
    try:
        res, sent_all, t_done = run_copy(w, after_g=waiter.start)
        assert sent_all, "pgmux stopped reading the client's CopyData after the error"
        assert describe_msgs(res.messages) == want
        assert res.status == "I"
        out = waiter.join(5)
        assert out.get("v") == "1", "the waiting client did not get the server: %r" % out
        assert out["t"] - t_done < 2.0
        assert w.pending(0.2) == []
        r = w.check_query("SELECT count(*) FROM %s" % tbl)
        assert r.scalar() == "0"
    finally:
        w.close()
        waiter.close()
    with mux.connect() as c:
        c.execute("DROP TABLE %s" % tbl)


@pytest.mark.timeout(40)
def test_copy_duplicate_key_psycopg_releases_server(pgmux):
    mux = pgmux(pool_size=1)
    tbl = table_name("copydup")
    with mux.connect() as c:
        c.execute("CREATE TABLE %s (id int PRIMARY KEY, pad text)" % tbl)
    rows = copy_rows(50_000)
    waiter = RawWaiter(mux)
    try:
        with mux.connect() as a:
            with pytest.raises(psycopg.errors.UniqueViolation):
                with a.cursor() as cur:
                    with cur.copy("COPY %s FROM STDIN" % tbl) as cp:
                        waiter.start()
                        for off in range(0, len(rows), 500):
                            cp.write(b"".join(rows[off:off + 500]))
            t_err = time.monotonic()
            out = waiter.join(5)
            assert out.get("v") == "1", "the waiting client did not get the server: %r" % out
            assert out["t"] - t_err < 2.0
            assert a.execute("SELECT count(*) FROM %s" % tbl).fetchone()[0] == 0
    finally:
        waiter.close()
    with mux.connect() as c:
        c.execute("DROP TABLE %s" % tbl)


def test_copy_fail_from_client(pgmux):
    mux = pgmux(pool_size=1)
    tbl = table_name("copyfail")
    with mux.connect() as c:
        c.execute("CREATE TABLE %s (id int)" % tbl)
    w, _ = mux.wire_login()
    with w:
        w.send(pgwire.query("COPY %s FROM STDIN" % tbl))
        w.expect("G")
        w.send(pgwire.copy_data(b"1\n2\n") + pgwire.copy_fail("changed my mind"))
        res = w.read_until_ready()
        assert [e.get("C") for e in res.errors] == ["57014"], res.errors
        assert res.status == "I"
        with mux.connect() as c:
            assert c.execute("SELECT count(*) FROM %s" % tbl).fetchone()[0] == 0
            c.execute("DROP TABLE %s" % tbl)
