"""TLS towards clients: client_tls_sslmode and its files, as PgBouncer's.

The certificates are made here with the openssl command: a CA, a second
CA nobody trusts, a pgmux certificate for localhost and 127.0.0.1, one for
localhost only, and client certificates. Every client is a real one (psql,
psycopg, asyncpg, pgbench) or, where a test needs bytes no driver sends,
the raw protocol client wrapped in Python's ssl module.
"""

import base64
import hashlib
import os
import socket
import ssl
import subprocess
import threading
import time
import warnings

import pytest

import harness
import pgwire
from harness import DB, HOST, PASSWORDS, PG_BINDIR

MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def _issue(d, name, cn, ca, san=None):
    """A P-256 key and a certificate for CN signed by CA (a name in D)."""
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name + ".key", cwd=d)
    _openssl("req", "-new", "-key", name + ".key", "-subj", "/CN=" + cn, "-out", name + ".csr",
             cwd=d)
    ext = d / (name + ".ext")
    lines = ["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment"]
    if san:
        lines.append("subjectAltName=" + san)
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
             "-CAcreateserial", "-days", "30", "-sha256", "-extfile", name + ".ext",
             "-out", name + ".crt", cwd=d)
    os.chmod(d / (name + ".key"), 0o600)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    for ca in ("ca", "otherca"):
        _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca + ".key", cwd=d)
        _openssl("req", "-new", "-x509", "-key", ca + ".key", "-subj", "/CN=pgmux test " + ca,
                 "-days", "30", "-sha256", "-out", ca + ".crt", cwd=d)
    _issue(d, "server", "localhost", "ca", san="DNS:localhost,IP:127.0.0.1")
    _issue(d, "server_dns", "localhost", "ca", san="DNS:localhost")
    _issue(d, "client_app", "app", "ca")
    _issue(d, "client_other", "app", "otherca")
    _issue(d, "client_app2", "app2", "ca")
    return d


def tls_settings(certs, mode="require", cert="server", **kw):
    s = {"client_tls_sslmode": mode,
         "client_tls_cert_file": certs / (cert + ".crt"),
         "client_tls_key_file": certs / (cert + ".key"),
         "client_tls_ca_file": certs / "ca.crt"}
    s.update(kw)
    return s


def psql(mux, sql, certs=None, host=HOST, user="app", **conn):
    """psql with libpq connection options CONN (sslmode, sslrootcert, ...)."""
    parts = {"host": host, "port": mux.port, "user": user, "dbname": DB, "connect_timeout": 10}
    if certs is not None:
        parts["sslrootcert"] = certs / "ca.crt"
    parts.update(conn)
    dsn = " ".join("%s=%s" % (k, v) for k, v in parts.items())
    env = dict(os.environ)
    env["PGPASSWORD"] = PASSWORDS[user]
    for k in ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSERVICE"):
        env.pop(k, None)
    return subprocess.run([str(PG_BINDIR / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                           dsn, "-c", sql], capture_output=True, text=True, timeout=30, env=env)


def conninfo(mux, certs, **conn):
    r = psql(mux, "\\conninfo", certs, **conn)
    return r.returncode, r.stdout + r.stderr


def expected(server, client):
    """What psql with sslmode CLIENT (no client certificate) gets from a
    pgmux with client_tls_sslmode SERVER: 'plain', 'tls' or 'error'."""
    if server == "disable":
        return "plain" if client in ("disable", "allow", "prefer") else "error"
    if server in ("verify-ca", "verify-full"):
        return "error"  # no client certificate
    if client == "disable":
        return "plain" if server in ("allow", "prefer") else "error"
    if client == "allow":
        # libpq tries plaintext first, and TLS when that is refused
        return "plain" if server in ("allow", "prefer") else "tls"
    return "tls"


@pytest.mark.parametrize("server", MODES)
def test_psql_every_sslmode_against_every_client_tls_sslmode(pgmux, certs, server):
    mux = pgmux(**tls_settings(certs, server))
    for client in MODES:
        rc, out = conninfo(mux, certs, sslmode=client)
        want = expected(server, client)
        where = "client_tls_sslmode=%s, psql sslmode=%s: %s" % (server, client, out)
        if want == "error":
            assert rc != 0, where
            continue
        assert rc == 0, where
        assert ("SSL connection (protocol: TLSv1.3" in out) == (want == "tls"), where
    if server not in ("verify-ca", "verify-full"):
        mux.assert_serves()


def test_require_refuses_plaintext_with_28000(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "require"))
    r = psql(mux, "SELECT 1", certs, sslmode="disable")
    assert r.returncode != 0
    assert "TLS required" in r.stderr, r.stderr
    w = mux.wire()
    w.send(pgwire.startup_packet({"user": "app", "database": DB}))
    t, payload = w.recv_msg()
    assert t == "E"
    f = pgwire.parse_error_fields(payload)
    assert f["C"] == "28000" and "TLS required" in f["M"], f
    assert w.wait_closed(5)
    mux.wait_for_log(r"client_login_failed .*sqlstate=28000 reason=tls_required")


def test_verify_full_by_host_name_and_by_ip(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "require"))
    for host in ("localhost", HOST):
        rc, out = conninfo(mux, certs, host=host, sslmode="verify-full")
        assert rc == 0 and "SSL connection" in out, (host, out)
    mux2 = pgmux(**tls_settings(certs, "require", cert="server_dns"))
    rc, out = conninfo(mux2, certs, host="localhost", sslmode="verify-full")
    assert rc == 0, out
    rc, out = conninfo(mux2, certs, host=HOST, sslmode="verify-full")
    assert rc != 0 and "does not match host name" in out, out
    # verify-ca does not look at the name
    rc, out = conninfo(mux2, certs, host=HOST, sslmode="verify-ca")
    assert rc == 0, out


def test_wrong_ca_is_refused(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "require"))
    for mode in ("verify-ca", "verify-full"):
        rc, out = conninfo(mux, None, sslmode=mode, sslrootcert=certs / "otherca.crt")
        assert rc != 0 and "certificate verify failed" in out, out
    mux.assert_serves()


def test_client_certificates_under_verify_ca(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "verify-ca"))
    rc, out = conninfo(mux, certs, sslmode="require", sslcert=certs / "client_app.crt",
                       sslkey=certs / "client_app.key")
    assert rc == 0 and "SSL connection" in out, out
    # signed by a CA pgmux does not trust, or none at all: refused
    rc, out = conninfo(mux, certs, sslmode="require", sslcert=certs / "client_other.crt",
                       sslkey=certs / "client_other.key")
    assert rc != 0, out
    rc, out = conninfo(mux, certs, sslmode="require")
    assert rc != 0, out
    mux.wait_for_log(r"tls_error .*reason=")


def tls_wire(mux, certs, alpn=None):
    """A raw protocol connection, upgraded to TLS after an SSLRequest."""
    w = mux.wire()
    assert w.request_encryption(pgwire.ssl_request()) == b"S"
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.check_hostname = False
    w.sock = ctx.wrap_socket(w.sock, server_hostname="localhost")
    return w


def test_unencrypted_data_after_ssl_request_is_refused(pgmux, certs):
    """A man in the middle can append plaintext to an SSLRequest: the bytes
    must not be taken as if they came over TLS (CVE-2021-23214)."""
    mux = pgmux(**tls_settings(certs, "prefer"))
    w = mux.wire()
    w.send(pgwire.ssl_request() + pgwire.startup_packet({"user": "app", "database": DB}))
    msgs, closed = w.read_until_close(5)
    assert closed
    assert msgs and msgs[0][0] == "E", msgs
    f = pgwire.parse_error_fields(msgs[0][1])
    assert f["C"] == "08P01" and "unencrypted data after SSL request" in f["M"], f
    mux.assert_serves()


def test_raw_login_and_queries_over_tls(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "require"))
    w = tls_wire(mux, certs)
    assert w.sock.version() in ("TLSv1.2", "TLSv1.3")
    # a second SSLRequest inside TLS is answered N, and the login goes on
    assert w.request_encryption(pgwire.ssl_request()) == b"N"
    w.login("app", DB, password=PASSWORDS["app"])
    w.send(pgwire.query("SELECT 6 * 7"))
    res = w.read_until_ready()
    assert res.rows == [["42"]]
    w.close()


@pytest.mark.threads
def test_cancel_request_over_tls(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "require"), pool_size=2)
    w = tls_wire(mux, certs)
    login = w.login("app", DB, password=PASSWORDS["app"])
    pid, key = login.backend_key
    w.send(pgwire.query("SELECT pg_sleep(20)"))
    time.sleep(0.5)
    t0 = time.monotonic()
    c = tls_wire(mux, certs)
    c.send(pgwire.cancel_request(pid, key))
    assert c.wait_closed(5)
    res = w.read_until_ready(timeout=10)
    assert res.error and res.error["C"] == "57014", res.errors
    assert time.monotonic() - t0 < 5
    w.close()


def test_below_tls_1_2_is_refused(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "require"))
    w = mux.wire()
    assert w.request_encryption(pgwire.ssl_request()) == b"S"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, OSError)):
        ctx.wrap_socket(w.sock, server_hostname="localhost")
    # refused by pgmux (the ClientHello offered TLS 1.1 at most), not by
    # the client's own library
    mux.wait_for_log(r'tls_error .*reason="unsupported protocol"')
    # and client_tls_protocols = tlsv1.3 refuses 1.2
    mux2 = pgmux(**tls_settings(certs, "require", client_tls_protocols="tlsv1.3"))
    rc, out = conninfo(mux2, certs, sslmode="require", ssl_max_protocol_version="TLSv1.2")
    assert rc != 0, out
    rc, out = conninfo(mux2, certs, sslmode="require")
    assert rc == 0 and "TLSv1.3" in out, out


def test_large_results_and_copy_over_tls(pgmux, certs):
    """Back-pressure and big messages through the TLS bufferevent."""
    mux = pgmux(**tls_settings(certs, "require"), pool_size=2)
    with mux.connect(sslmode="require") as c:
        n = c.execute("SELECT count(*), sum(length(r)) FROM (SELECT repeat('x', 1000) AS r "
                      "FROM generate_series(1, 50000)) s").fetchone()
        assert n == (50000, 50000 * 1000)
        rows = c.execute("SELECT i, repeat('y', 500) FROM generate_series(1, 40000) i").fetchall()
        assert len(rows) == 40000 and rows[-1][0] == 40000
        big = c.execute("SELECT repeat('z', 8000000)").fetchone()[0]
        assert len(big) == 8000000
        c.execute("CREATE TEMP TABLE t (a int, b text)")
        with c.cursor().copy("COPY t FROM STDIN") as cp:
            for i in range(20000):
                cp.write_row((i, "v" * 200))
        assert c.execute("SELECT count(*) FROM t").fetchone()[0] == 20000


@pytest.mark.threads
@pytest.mark.timeout(120)
def test_drivers_in_transaction_mode_over_tls(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "require"), pool_size=3, workers=2)
    # psycopg, 8 threads over 3 servers
    errors = []

    def work(i):
        try:
            with mux.connect(sslmode="require") as c:
                for j in range(30):
                    with c.transaction():
                        v = c.execute("SELECT %s::int + %s", (i, j)).fetchone()[0]
                        assert v == i + j
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    # asyncpg with its statement cache (named prepared statements)
    r = subprocess.run(["/usr/bin/python3", "-c", """
import asyncio, ssl, sys, asyncpg
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[3]); ctx.check_hostname = False
    pool = await asyncpg.create_pool(host=sys.argv[1], port=int(sys.argv[2]), user='app',
        password=sys.argv[4], database=sys.argv[5], ssl=ctx, min_size=6, max_size=6)
    async def one(i):
        async with pool.acquire() as c:
            for j in range(20):
                assert await c.fetchval('SELECT $1::int * 2', i + j) == 2 * (i + j)
            assert await c.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") is not None
    await asyncio.gather(*(one(i) for i in range(12)))
    await pool.close()
asyncio.run(main())
""", HOST, str(mux.port), str(certs / "ca.crt"), PASSWORDS["app"], DB],
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # pgbench -M extended and simple over TLS
    for proto in ("simple", "extended"):
        env = dict(os.environ, PGPASSWORD=PASSWORDS["app"], PGSSLMODE="require")
        r = subprocess.run([str(PG_BINDIR / "pgbench"), "-n", "-S", "-M", proto, "-c", "8", "-j",
                            "2", "-T", "3", "-h", HOST, "-p", str(mux.port), "-U", "app", DB],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        assert "number of failed transactions: 0" in r.stdout or "failed" not in r.stdout, r.stdout
    assert len(mux.log_lines(r"client_login .*tls=TLSv1\.3/")) >= 8
    mux.assert_serves()


def test_config_errors(pgmux, certs, tmp_path):
    def check(extra):
        inst = harness.Pgmux(mux.pg, tmp_path / ("c%d" % len(seen)), **extra)
        seen.append(inst)
        return harness.run_check(inst)

    seen = []
    mux = pgmux()
    r = check({"client_tls_sslmode": "require"})
    assert r.returncode == 1
    assert "client_tls_cert_file is required when client_tls_sslmode is require" in r.stderr
    assert ":%d:" % _line(seen[-1], "client_tls_sslmode") in r.stderr, r.stderr
    r = check(tls_settings(certs, "verify-ca", client_tls_ca_file=None))
    assert r.returncode == 1 and "client_tls_ca_file is required" in r.stderr, r.stderr
    r = check(tls_settings(certs, "require", client_tls_protocols="tlsv1.1"))
    assert r.returncode == 1 and "no TLS below 1.2" in r.stderr, r.stderr
    assert ":%d:" % _line(seen[-1], "client_tls_protocols") in r.stderr
    r = check(tls_settings(certs, "require", client_tls_key_file=certs / "missing.key"))
    assert r.returncode == 1 and "client_tls_key_file" in r.stderr and \
        "No such file" in r.stderr, r.stderr
    r = check(tls_settings(certs, "require", client_tls_key_file=certs / "client_app.key"))
    assert r.returncode == 1 and "does not match" in r.stderr, r.stderr
    r = check(tls_settings(certs, "require", client_tls_ciphers="NO-SUCH-CIPHER"))
    assert r.returncode == 1 and "client_tls_ciphers" in r.stderr, r.stderr
    r = check(tls_settings(certs, "verify-full"))
    assert r.returncode == 0, r.stderr


def _line(inst, key):
    for i, l in enumerate(inst.config_text.splitlines(), 1):
        if l.startswith(key + " "):
            return i
    raise AssertionError(key)


def test_session_resumption(pgmux, certs):
    """A reconnecting client that kept its session skips the full handshake."""
    mux = pgmux(**tls_settings(certs, "require"))
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.check_hostname = False
    sess = None
    reused = []
    for i in range(3):
        s = socket.create_connection((HOST, mux.port), timeout=5)
        s.sendall(pgwire.ssl_request())
        assert s.recv(1) == b"S"
        t = ctx.wrap_socket(s, server_hostname="localhost", session=sess)
        w = pgwire.PgWire.__new__(pgwire.PgWire)
        w.timeout, w.sock, w.buf, w.eof = 5.0, t, b"", False
        w.login("app", DB, password=PASSWORDS["app"])  # TLS 1.3 tickets arrive after the handshake
        reused.append(t.session_reused)
        sess = t.session
        w.close()
    assert reused == [False, True, True], reused


# --------------------------------------------------------------------------
# SCRAM-SHA-256-PLUS (tls-server-end-point channel binding)


class PlusScram(pgwire.ScramClient):
    """A SCRAM exchange with gs2 header GS2 ("p=tls-server-end-point,,",
    "y,," or "n,,") and channel binding data CB (bytes, for "p")."""

    def __init__(self, password, gs2, cb=b""):
        super().__init__(password)
        self.gs2, self.cb = gs2, cb

    def first_message(self):
        return self.gs2 + self.client_first_bare

    def final_message(self, server_first, **kw):
        c = base64.b64encode(self.gs2.encode() + self.cb).decode()
        return super().final_message(server_first, cbind=c, **kw)


def sasl_login(w, mech, scram):
    """Startup, then a SASL exchange with MECH; returns the mechanisms
    offered and the first ErrorResponse's fields (None if logged in)."""
    w.send(pgwire.startup_packet({"user": "app", "database": DB}))
    t, payload = w.recv_msg()
    assert t == "R", t
    code, data = pgwire.parse_auth(payload)
    assert code == 10
    mechs = [m.decode() for m in data.split(b"\0") if m]
    w.send(pgwire.sasl_initial_response(mech, scram.first_message()))
    t, payload = w.recv_msg()
    if t == "E":
        return mechs, pgwire.parse_error_fields(payload)
    code, data = pgwire.parse_auth(payload)
    assert code == 11, code
    w.send(pgwire.password_message(scram.final_message(data.decode())))
    t, payload = w.recv_msg()
    if t == "E":
        return mechs, pgwire.parse_error_fields(payload)
    code, data = pgwire.parse_auth(payload)
    assert code == 12
    scram.verify_server_final(data.decode())
    w.read_until_ready()
    return mechs, None


def end_point(w):
    """tls-server-end-point of the certificate this client saw (the test
    certificates are ECDSA with SHA-256)."""
    return hashlib.sha256(w.sock.getpeercert(binary_form=True)).digest()


def test_scram_plus_offered_only_over_tls(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "prefer"))
    w = mux.wire()
    mechs, err = sasl_login(w, "SCRAM-SHA-256", PlusScram(PASSWORDS["app"], "n,,"))
    assert err is None and mechs == ["SCRAM-SHA-256"], (mechs, err)
    w.close()
    # over plaintext, a client that asks for -PLUS anyway is refused
    w = mux.wire()
    mechs, err = sasl_login(w, "SCRAM-SHA-256-PLUS", PlusScram(PASSWORDS["app"], "n,,"))
    assert err and err["C"] == "08P01", err
    w.close()
    w = tls_wire(mux, certs)
    mechs, err = sasl_login(w, "SCRAM-SHA-256-PLUS",
                            PlusScram(PASSWORDS["app"], "p=tls-server-end-point,,", end_point(w)))
    assert err is None and mechs == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], (mechs, err)
    assert w.check_query("SELECT 7").scalar() == "7"
    w.close()


def test_scram_plus_refuses_wrong_binding_and_downgrade(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "require"))
    # binding data of another certificate: what a client behind a man in
    # the middle would send
    w = tls_wire(mux, certs)
    mechs, err = sasl_login(w, "SCRAM-SHA-256-PLUS",
                            PlusScram(PASSWORDS["app"], "p=tls-server-end-point,,", b"\0" * 32))
    assert err and err["C"] == "08P01", err
    assert w.wait_closed(5)
    # "y": the client could bind but believes the server cannot, although
    # -PLUS was offered: a downgrade
    w = tls_wire(mux, certs)
    mechs, err = sasl_login(w, "SCRAM-SHA-256", PlusScram(PASSWORDS["app"], "y,,"))
    assert err and err["C"] == "08P01", err
    # SCRAM-SHA-256 with "n" over TLS is still fine
    w = tls_wire(mux, certs)
    mechs, err = sasl_login(w, "SCRAM-SHA-256", PlusScram(PASSWORDS["app"], "n,,"))
    assert err is None, err
    w.close()


def test_psql_channel_binding_require(pg, pgmux, certs):
    mux = pgmux(**tls_settings(certs, "prefer"))
    rc, out = conninfo(mux, certs, sslmode="require", channel_binding="require")
    assert rc == 0 and "SSL connection" in out, out
    rc, out = conninfo(mux, certs, sslmode="disable", channel_binding="require")
    assert rc != 0 and "channel binding" in out, out
    # with the SCRAM verifier in the auth_file, pgmux logs in to the server
    # with the ClientKey of the client's proof, which binding leaves intact
    userlist = dict(PASSWORDS)
    userlist["app"] = pg.rolpassword("app")
    mux2 = pgmux(userlist=userlist, **tls_settings(certs, "require"))
    r = psql(mux2, "SELECT current_user", certs, sslmode="verify-full", host="localhost",
             channel_binding="require")
    assert r.returncode == 0 and r.stdout.strip() == "app", r.stderr


# --------------------------------------------------------------------------
# Direct TLS (PostgreSQL 17's sslnegotiation=direct): a ClientHello first,
# with ALPN "postgresql"; psql 15 cannot, so a raw client does it


def direct_wire(mux, certs, alpn):
    w = mux.wire()
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.check_hostname = False
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    w.sock = ctx.wrap_socket(w.sock, server_hostname="localhost")
    return w


def test_direct_tls_with_alpn(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "require"))
    w = direct_wire(mux, certs, ["postgresql"])
    assert w.sock.selected_alpn_protocol() == "postgresql"
    w.login("app", DB, password=PASSWORDS["app"])
    assert w.check_query("SELECT 8").scalar() == "8"
    w.close()
    # the same port still takes SSLRequest and plaintext
    rc, out = conninfo(mux, certs, sslmode="require")
    assert rc == 0 and "SSL connection" in out, out
    mux.wait_for_log(r"client_login .*tls=TLSv1\.3/")


def test_direct_tls_without_alpn_is_refused(pgmux, certs):
    mux = pgmux(**tls_settings(certs, "prefer"))
    # no ALPN at all: the handshake completes, then pgmux refuses in TLS
    w = direct_wire(mux, certs, None)
    w.send(pgwire.startup_packet({"user": "app", "database": DB}))
    msgs, closed = w.read_until_close(5)
    assert closed and msgs and msgs[0][0] == "E", msgs
    f = pgwire.parse_error_fields(msgs[0][1])
    assert f["C"] == "08P01" and "without ALPN" in f["M"], f
    # ALPN offered, but not postgresql: no_application_protocol alert
    with pytest.raises(ssl.SSLError) as ei:
        direct_wire(mux, certs, ["http/1.1"])
    assert "no application protocol" in str(ei.value), ei.value
    mux.assert_serves()


def test_direct_tls_when_tls_is_off(pgmux, certs):
    """client_tls_sslmode = disable: a ClientHello is no startup packet."""
    mux = pgmux()
    w = mux.wire()
    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["postgresql"])
    with pytest.raises((ssl.SSLError, OSError)):
        ctx.wrap_socket(w.sock, server_hostname="localhost")
    mux.wait_for_log(r"protocol_error .*bad_startup_length")
    mux.assert_serves()



# --------------------------------------------------------------------------
# auth_type = cert: the certificate's CommonName is the user name


def test_cert_auth(pgmux, certs):
    mux = pgmux(auth_type="cert", **tls_settings(certs, "verify-full"))
    # no password is asked for: a wrong one in the environment changes nothing
    r = psql(mux, "SELECT current_user", certs, sslmode="verify-full", host="localhost",
             sslcert=certs / "client_app.crt", sslkey=certs / "client_app.key")
    assert r.returncode == 0 and r.stdout.strip() == "app", r.stderr
    # the certificate names another user
    r = psql(mux, "SELECT 1", certs, sslmode="require", sslcert=certs / "client_app2.crt",
             sslkey=certs / "client_app2.key")
    assert r.returncode != 0 and 'certificate authentication failed for user "app"' in r.stderr, \
        r.stderr
    mux.wait_for_log(r"client_login_failed .*sqlstate=28000 reason=cn_mismatch")
    # CN app2 logs in as app2, whose password pgmux has for the server
    r = psql(mux, "SELECT current_user", certs, user="app2", sslmode="require",
             sslcert=certs / "client_app2.crt", sslkey=certs / "client_app2.key")
    assert r.returncode == 0 and r.stdout.strip() == "app2", r.stderr
    # transaction pooling goes on as with any login
    with mux.connect(sslmode="require", sslrootcert=certs / "ca.crt",
                     sslcert=certs / "client_app.crt", sslkey=certs / "client_app.key",
                     password="not-the-password") as c:
        for i in range(5):
            assert c.execute("SELECT %s::int", (i,)).fetchone()[0] == i


def test_cert_auth_needs_verified_client_certificates(pgmux, certs, tmp_path):
    mux = pgmux()
    inst = harness.Pgmux(mux.pg, tmp_path / "c", auth_type="cert", **tls_settings(certs, "require"))
    r = harness.run_check(inst)
    assert r.returncode == 1
    assert "auth_type cert needs client_tls_sslmode verify-ca or verify-full" in r.stderr, r.stderr
    assert ":%d:" % _line(inst, "auth_type") in r.stderr
