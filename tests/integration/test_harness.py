"""Self-check of the harness: the raw protocol client against PostgreSQL
itself, with no pgmux in between. If these fail, the other tests' verdicts
mean nothing."""

import pytest

import pgwire
from harness import DB, HOST, PASSWORDS


def pg_login(pg, user="app", password=None, **kw):
    return pgwire.connect(HOST, pg.port, user, DB,
                          password=PASSWORDS[user] if password is None else password, **kw)


def test_scram_login_direct(pg):
    c, res = pg_login(pg, "app")
    with c:
        assert 10 in res.auth_codes and res.auth_codes[-1] == 0
        assert res.sasl_mechanisms == ["SCRAM-SHA-256"]
        assert res.status == "I"
        assert res.backend_key is not None
        assert c.check_query("SELECT current_user").scalar() == "app"


def test_md5_login_direct(pg):
    c, res = pg_login(pg, "md5user")
    with c:
        assert 5 in res.auth_codes
        assert c.check_query("SELECT current_user").scalar() == "md5user"


def test_wrong_password_direct(pg):
    with pytest.raises(pgwire.PgError) as ei:
        pg_login(pg, "app", password="nope")
    assert ei.value.sqlstate == "28P01"


def test_extended_protocol_shapes_direct(pg):
    """The message sequences the protocol tests expect, checked on PostgreSQL."""
    c, _ = pg_login(pg)
    with c:
        c.send(pgwire.parse("", "SELECT g FROM generate_series(1,3) g")
               + pgwire.bind() + pgwire.describe("P") + pgwire.execute(max_rows=1)
               + pgwire.flush())
        c.expect("1", "2", "T", "D", "s")
        for _ in range(2):
            c.send(pgwire.execute(max_rows=1) + pgwire.flush())
            c.expect("D", "s")
        c.send(pgwire.execute(max_rows=1) + pgwire.flush())
        (_, tag), = c.expect("C")
        assert pgwire.parse_command_complete(tag) == "SELECT 0"
        c.send(pgwire.sync())
        c.expect("Z")
        # error mid-pipeline: exactly one Z per Sync
        seg = lambda sql: (pgwire.parse("", sql) + pgwire.bind() + pgwire.execute()
                           + pgwire.sync())
        c.send(seg("SELECT 1") + seg("SELECT 1/0") + seg("SELECT 3"))
        res = c.read_until_ready(count=3)
        # 1/0 is folded at plan time, so the error answers the Bind
        assert res.types() == ["1", "2", "D", "C", "Z", "1", "E", "Z",
                               "1", "2", "D", "C", "Z"]
        assert c.pending(0.2) == []


def test_scram_verifier_helper_matches_server_format(pg):
    v = pg.rolpassword("app")
    assert v.startswith("SCRAM-SHA-256$4096:")
    assert pgwire.scram_verifier("x").startswith("SCRAM-SHA-256$4096:")
