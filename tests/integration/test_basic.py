"""Logging in and running queries through pgmux with ordinary clients."""

import psycopg
import pytest

import pgwire
from harness import DB, PASSWORDS, md5_secret, run_psql

REPORTED = ["server_version", "client_encoding", "DateStyle", "TimeZone",
            "integer_datetimes", "standard_conforming_strings", "application_name"]


def test_psql_select_1(mux):
    r = run_psql(mux, "select 1")
    assert r.returncode == 0, "psql failed: stdout=%r stderr=%r" % (r.stdout, r.stderr)
    assert r.stdout.strip() == "1"


def test_psql_wrong_password_is_refused(mux):
    r = run_psql(mux, "select 1", password="not-the-password")
    assert r.returncode != 0
    assert "1" != r.stdout.strip()
    assert "authentication failed" in r.stderr, r.stderr


def test_psycopg_queries(mux):
    with mux.connect() as c:
        assert c.execute("SELECT current_user, current_database()").fetchone() == ("app", DB)
        assert c.execute("SELECT %s::int + %s::int", (40, 2)).fetchone()[0] == 42
        assert c.execute("SELECT count(*) FROM pgbench_branches").fetchone()[0] == 1
        assert c.info.backend_pid != 0
        assert c.info.parameter_status("server_version").startswith("15")
    # a non-autocommit connection: transaction, rollback
    with mux.connect(autocommit=False) as c:
        c.execute("CREATE TEMP TABLE t (x int)")
        c.execute("INSERT INTO t VALUES (1), (2)")
        assert c.execute("SELECT sum(x) FROM t").fetchone()[0] == 3
        c.rollback()
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM t")
        c.rollback()


def test_client_auth_scram(pgmux):
    mux = pgmux(auth_type="scram-sha-256")
    c, res = mux.wire_login()
    with c:
        assert res.auth_codes == [10, 11, 12, 0], res.auth_codes
        # no channel binding on a plaintext connection
        assert res.sasl_mechanisms == ["SCRAM-SHA-256"]
        assert c.check_query("SELECT current_user").scalar() == "app"
    with mux.connect() as pc:
        assert pc.execute("SELECT 1").fetchone()[0] == 1
    mux.wait_for_log(r"event=client_login\b.*\bdb=appdb\b.*\buser=app\b")


def test_client_auth_md5(pgmux):
    mux = pgmux(auth_type="md5")
    c, res = mux.wire_login()
    with c:
        assert res.auth_codes == [5, 0], res.auth_codes
        assert c.check_query("SELECT current_user").scalar() == "app"
    with mux.connect() as pc:
        assert pc.execute("SELECT 1").fetchone()[0] == 1


def test_client_auth_trust(pgmux):
    mux = pgmux(auth_type="trust")
    c, res = mux.wire_login(password=None)
    with c:
        assert res.auth_codes == [0], res.auth_codes
        assert c.check_query("SELECT current_user").scalar() == "app"
    with mux.connect(password="") as pc:
        assert pc.execute("SELECT current_user").fetchone()[0] == "app"


@pytest.mark.parametrize("secret_form,auth_type", [
    ("plain", "scram-sha-256"),
    ("md5hash", "md5"),
])
def test_server_login_md5_stored_user(pgmux, secret_form, auth_type):
    """md5user's password is stored as MD5 in PostgreSQL: pgmux must log in
    to the server with MD5, from a plain or an md5-hashed userlist entry."""
    userlist = dict(PASSWORDS)
    if secret_form == "md5hash":
        userlist["md5user"] = md5_secret("md5user")
    mux = pgmux(auth_type=auth_type, userlist=userlist)
    with mux.connect(user="md5user") as c:
        assert c.execute("SELECT current_user").fetchone()[0] == "md5user"


def test_server_login_with_scram_verifier(pg, pgmux):
    """The userlist holds only the SCRAM verifier copied from pg_authid:
    pgmux must log in to the server using the client's own SCRAM proof,
    for every server connection it opens."""
    verifier = pg.rolpassword("app")
    assert verifier.startswith("SCRAM-SHA-256$")
    userlist = dict(PASSWORDS)
    userlist["app"] = verifier
    mux = pgmux(auth_type="scram-sha-256", userlist=userlist, pool_size=5)
    with mux.connect() as c1, mux.connect() as c2:
        assert c1.execute("SELECT current_user").fetchone()[0] == "app"
        # two transactions at once need two server logins
        c1.execute("BEGIN")
        c2.execute("BEGIN")
        p1 = c1.execute("SELECT pg_backend_pid()").fetchone()[0]
        p2 = c2.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert p1 != p2
        c1.execute("COMMIT")
        c2.execute("COMMIT")
    with pytest.raises(pgwire.PgError) as ei:
        mux.wire_login(password="wrong-password")
    assert ei.value.sqlstate == "28P01"


def test_unknown_database(mux):
    mark = mux.log_mark()
    with pytest.raises(pgwire.PgError) as ei:
        mux.wire_login(dbname="nosuchdb")
    assert ei.value.sqlstate == "3D000", ei.value.fields
    assert ei.value.fields.get("S") == "FATAL"
    mux.wait_for_log(r"event=client_login_failed\b.*\bsqlstate=3D000", since=mark)
    mux.assert_serves()


@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5"])
@pytest.mark.parametrize("user", ["ghost", "app2"])
def test_user_not_in_auth_file(pgmux, auth_type, user):
    """ghost exists nowhere; app2 exists in PostgreSQL but not in the auth_file."""
    userlist = {"app": PASSWORDS["app"]}
    mux = pgmux(auth_type=auth_type, userlist=userlist)
    with pytest.raises(pgwire.PgError) as ei:
        mux.wire_login(user=user, password="whatever-pw")
    assert ei.value.sqlstate in ("28000", "28P01"), ei.value.fields
    assert ei.value.fields.get("S") == "FATAL"
    mux.assert_serves()


@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5"])
def test_wrong_password(pgmux, auth_type):
    mux = pgmux(auth_type=auth_type)
    mark = mux.log_mark()
    with pytest.raises(pgwire.PgError) as ei:
        mux.wire_login(password="wrong-password")
    assert ei.value.sqlstate == "28P01", ei.value.fields
    assert ei.value.fields.get("S") == "FATAL"
    with pytest.raises(psycopg.OperationalError):
        mux.connect(password="wrong-password")
    mux.wait_for_log(r"event=client_login_failed\b.*\buser=app\b.*\bsqlstate=28P01", since=mark)
    assert "wrong-password" not in mux.log_text()
    mux.assert_serves()


def test_login_parameter_status_and_backend_key(mux):
    c, res = mux.wire_login(params={"application_name": "basic-test",
                                    "client_encoding": "UTF8"})
    with c:
        types = res.types()
        missing = [p for p in REPORTED if p not in res.params]
        assert not missing, "ParameterStatus missing %r; got %r" % (missing, res.params)
        assert res.params["application_name"] == "basic-test"
        assert res.params["client_encoding"] == "UTF8"
        assert res.params["integer_datetimes"] == "on"
        assert res.params["server_version"].startswith("15")
        assert types.count("K") == 1, types
        assert types[-1] == "Z" and res.status == "I"
        # AuthenticationOk comes first, then parameters and key, then Z
        assert types.index("K") < types.index("Z")
        ok_index = [i for i, (t, p) in enumerate(res.messages)
                    if t == "R" and pgwire.parse_auth(p)[0] == 0][0]
        assert all(t in ("S", "K", "N", "Z") for t in types[ok_index + 1:]), types
        pid, key = res.backend_key
        assert pid != 0 or key != 0
        assert c.check_query("SELECT current_setting('application_name')").scalar() == "basic-test"


def test_unknown_user_scram_salt_is_stable(pgmux):
    """An unknown user gets a made-up SCRAM salt that stays the same across
    attempts, like a real user's, so the salt does not tell who exists."""
    mux = pgmux(auth_type="scram-sha-256")

    def salt_for(user):
        scram = pgwire.ScramClient("whatever-pw")
        with pytest.raises(pgwire.PgError) as ei:
            mux.wire_login(user=user, password="whatever-pw", scram_client=scram)
        assert ei.value.sqlstate == "28P01", ei.value.fields
        attrs = dict(kv.split("=", 1) for kv in scram.server_first.split(","))
        return attrs["s"], attrs["i"]

    ghost = [salt_for("ghost") for _ in range(3)]
    assert ghost[0] == ghost[1] == ghost[2]
    assert ghost[0] != salt_for("ghost2")
    real = [salt_for("app") for _ in range(2)]  # wrong password, known user
    assert real[0] == real[1]
    assert ghost[0][1] == real[0][1]  # same iteration count as a real secret
    mux.assert_serves()
