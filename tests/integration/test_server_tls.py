"""TLS towards PostgreSQL: server_tls_sslmode and its files, with libpq's
meanings. The PostgreSQL here runs with ssl = on and refuses plaintext
(hostnossl ... reject), as RDS with rds.force_ssl = 1 does; app2 logs in
with a client certificate (hostssl ... cert)."""

import threading

import psycopg
import pytest

import harness
from harness import DB
from test_tls import certs  # noqa: F401  (the certificates fixture)


def tls_pg_files(certs, cert):
    return {"server.crt": certs / (cert + ".crt"), "server.key": certs / (cert + ".key"),
            "root.crt": certs / "ca.crt"}


TLS_CONF = ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'",
            "ssl_ca_file = 'root.crt'"]
TLS_HBA = ["hostnossl all all 127.0.0.1/32 reject",
           "hostssl all app2 127.0.0.1/32 cert",
           "hostssl all md5user 127.0.0.1/32 md5",
           "hostssl all all 127.0.0.1/32 scram-sha-256"]


def start_tls_pg(certs, cert):
    server = harness.PgServer(conf=TLS_CONF, hba=TLS_HBA, files=tls_pg_files(certs, cert))
    server.start()
    server.setup_roles(pgbench=False)
    return server


@pytest.fixture(scope="module")
def tls_pg(certs):  # noqa: F811
    """ssl = on with a certificate for localhost and 127.0.0.1."""
    server = start_tls_pg(certs, "server")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_pg_dns(certs):  # noqa: F811
    """ssl = on with a certificate for localhost only."""
    server = start_tls_pg(certs, "server_dns")
    yield server
    server.stop()


@pytest.fixture
def mux_for(pgmux):
    """pgmux in front of SERVER (reached at HOST), pool_size 3."""
    def start(server, host=harness.HOST, **settings):
        db = {DB: {"host": host, "port": server.port, "dbname": DB, "pool_size": 3}}
        return pgmux(server=server, databases=db, **settings)
    return start


def server_ssl(mux, **kw):
    """What the server says about the server connection pgmux used."""
    with mux.connect(**kw) as c:
        return c.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                         ).fetchone()


@pytest.mark.parametrize("mode", ["prefer", "require"])
def test_prefer_and_require_use_tls(tls_pg, mux_for, mode):
    mux = mux_for(tls_pg, server_tls_sslmode=mode)
    ssl_on, version = server_ssl(mux)
    assert ssl_on and version == "TLSv1.3", (ssl_on, version)
    # PostgreSQL offers SCRAM-SHA-256-PLUS over TLS, and pgmux binds to it
    mux.wait_for_log(r"server_sasl .*mechanism=SCRAM-SHA-256-PLUS")


def test_scram_plus_towards_the_server_with_a_verifier(tls_pg, mux_for):
    """The auth_file holds the server's SCRAM verifier: pgmux logs in with
    the ClientKey of the client's proof, over a bound channel."""
    userlist = dict(harness.PASSWORDS)
    userlist["app"] = tls_pg.rolpassword("app")
    mux = mux_for(tls_pg, server_tls_sslmode="require", userlist=userlist)
    with mux.connect() as c1, mux.connect() as c2:
        c1.execute("BEGIN")
        c2.execute("BEGIN")  # a second server login, from the remembered key
        assert c1.execute("SELECT current_user").fetchone()[0] == "app"
        assert c2.execute("SELECT 1").fetchone()[0] == 1
        c1.execute("COMMIT")
        c2.execute("COMMIT")
    assert len(mux.log_lines(r"server_sasl .*mechanism=SCRAM-SHA-256-PLUS")) >= 2


def test_prefer_falls_back_to_plaintext_and_require_does_not(pg, mux_for):
    """The session's PostgreSQL has ssl = off."""
    mux = mux_for(pg)  # server_tls_sslmode defaults to prefer
    assert server_ssl(mux)[0] is False
    mux.wait_for_log(r"server_sasl .*mechanism=SCRAM-SHA-256$")
    mux2 = mux_for(pg, server_tls_sslmode="require")
    with pytest.raises(psycopg.OperationalError) as ei:
        mux2.connect()
    assert "server does not support SSL" in str(ei.value), ei.value
    mux2.wait_for_log(r"server_login_failed .*sqlstate=08006 .*does not support SSL")


def test_disable_meets_the_servers_refusal(tls_pg, mux_for):
    mux = mux_for(tls_pg, server_tls_sslmode="disable")
    with pytest.raises(psycopg.OperationalError) as ei:
        mux.connect()
    assert "no encryption" in str(ei.value) or "pg_hba.conf" in str(ei.value), ei.value


def test_verify_ca(tls_pg, mux_for, certs):  # noqa: F811
    mux = mux_for(tls_pg, server_tls_sslmode="verify-ca", server_tls_ca_file=certs / "ca.crt")
    assert server_ssl(mux)[0] is True
    bad = mux_for(tls_pg, server_tls_sslmode="verify-ca",
                  server_tls_ca_file=certs / "otherca.crt")
    with pytest.raises(psycopg.OperationalError) as ei:
        bad.connect()
    assert "certificate verify failed" in str(ei.value), ei.value
    # require with a CA file verifies as verify-ca does (libpq's rule)
    bad2 = mux_for(tls_pg, server_tls_sslmode="require", server_tls_ca_file=certs / "otherca.crt")
    with pytest.raises(psycopg.OperationalError):
        bad2.connect()


def test_verify_full_by_ip_and_by_name(tls_pg, tls_pg_dns, mux_for, certs):  # noqa: F811
    ca = certs / "ca.crt"
    assert server_ssl(mux_for(tls_pg, server_tls_sslmode="verify-full",
                              server_tls_ca_file=ca))[0] is True
    assert server_ssl(mux_for(tls_pg_dns, host="localhost", server_tls_sslmode="verify-full",
                              server_tls_ca_file=ca))[0] is True
    # a certificate that does not name 127.0.0.1: refused under verify-full,
    # accepted under verify-ca
    bad = mux_for(tls_pg_dns, server_tls_sslmode="verify-full", server_tls_ca_file=ca)
    with pytest.raises(psycopg.OperationalError) as ei:
        bad.connect()
    assert "certificate verify failed" in str(ei.value), ei.value
    bad.wait_for_log(r"server_login_failed .*TLS handshake with the server failed")
    assert server_ssl(mux_for(tls_pg_dns, server_tls_sslmode="verify-ca",
                              server_tls_ca_file=ca))[0] is True


def test_client_certificate_towards_the_server(tls_pg, mux_for, certs):  # noqa: F811
    """app2 is 'hostssl ... cert' on the server: pgmux presents
    server_tls_cert_file (CN app2) and the server asks for no password."""
    mux = mux_for(tls_pg, server_tls_sslmode="verify-full", server_tls_ca_file=certs / "ca.crt",
                  server_tls_cert_file=certs / "client_app2.crt",
                  server_tls_key_file=certs / "client_app2.key")
    with mux.connect(user="app2") as c:
        assert c.execute("SELECT current_user").fetchone()[0] == "app2"
    # without it the server refuses app2
    mux2 = mux_for(tls_pg, server_tls_sslmode="require")
    with pytest.raises(psycopg.OperationalError) as ei:
        mux2.connect(user="app2")
    assert "certificate" in str(ei.value), ei.value


@pytest.mark.threads
@pytest.mark.timeout(120)
def test_tls_servers_move_between_workers(tls_pg, mux_for):
    """workers = 2, 12 clients over pool_size 3: server connections over
    TLS are handed from worker to worker and keep working."""
    mux = mux_for(tls_pg, server_tls_sslmode="require", workers=2)
    errors = []

    def work(i):
        try:
            with mux.connect() as c:
                for j in range(40):
                    with c.transaction():
                        assert c.execute("SELECT %s::int + %s", (i, j)).fetchone()[0] == i + j
                        assert c.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = "
                                         "pg_backend_pid()").fetchone()[0] is True
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not errors, errors
    assert mux.log_lines(r"event=server_moved .*tls=on"), "no server changed workers"
    with tls_pg.connect() as c:
        n = c.execute("SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                      "WHERE a.usename = 'app' AND s.ssl").fetchone()[0]
    assert 1 <= n <= 3, n


def test_server_tls_config_errors(pg, tmp_path, certs):  # noqa: F811
    def check(**kw):
        inst = harness.Pgmux(pg, tmp_path / ("c%d" % check.n), **kw)
        check.n += 1
        return harness.run_check(inst)
    check.n = 0
    r = check(server_tls_sslmode="verify-ca")
    assert r.returncode == 1 and "server_tls_ca_file is required" in r.stderr, r.stderr
    r = check(server_tls_cert_file=certs / "client_app2.crt")
    assert r.returncode == 1 and "go together" in r.stderr, r.stderr
    r = check(server_tls_cert_file=certs / "client_app2.crt",
              server_tls_key_file=certs / "client_app.key")
    assert r.returncode == 1 and "does not match" in r.stderr, r.stderr
    r = check(server_tls_protocols="tlsv1.0")
    assert r.returncode == 1 and "server_tls_protocols" in r.stderr, r.stderr
    r = check(server_tls_sslmode="verify-full", server_tls_ca_file=certs / "ca.crt")
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def tls12_pg(certs):  # noqa: F811
    """ssl = on, but TLS 1.2 at most, and plaintext allowed."""
    server = harness.PgServer(conf=TLS_CONF + ["ssl_max_protocol_version = 'TLSv1.2'"],
                              files=tls_pg_files(certs, "server"))
    server.start()
    server.setup_roles(pgbench=False)
    yield server
    server.stop()


def test_prefer_falls_back_when_the_handshake_fails(tls12_pg, mux_for):
    """As libpq's prefer: a TLS handshake that fails (here pgmux wants TLS
    1.3, the server offers 1.2 at most) is retried in plaintext; require
    fails instead."""
    mux = mux_for(tls12_pg, server_tls_protocols="tlsv1.3")
    assert server_ssl(mux)[0] is False
    mux.wait_for_log(r"server_tls_fallback .*reason=handshake_failed")
    strict = mux_for(tls12_pg, server_tls_sslmode="require", server_tls_protocols="tlsv1.3")
    with pytest.raises(psycopg.OperationalError) as ei:
        strict.connect()
    assert "TLS handshake with the server failed" in str(ei.value), ei.value
    # and with TLS 1.2 allowed, TLS 1.2 it is
    ok = mux_for(tls12_pg, server_tls_sslmode="require")
    assert server_ssl(ok) == (True, "TLSv1.2")
