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


ASAN_SAMPLE = """ts=1 level=info event=listen
=================================================================
==4242==ERROR: AddressSanitizer: heap-use-after-free on address 0x6190 at pc 0x55 bp 0x7f sp 0x7f
READ of size 1 at 0x619000007dc3 thread T1
    #0 0x5621893c6657 in handle_internal_msg ../../src/pool/server.c:674
    #1 0x5621893c7fb4 in server_read_cb ../../src/pool/server.c:762
    #2 0x5621893d1a2b in read_cb ../../src/net/rbuf.c:36
    #3 0x7f8ecd8e5f0e in event_base_loop (/lib/x86_64-linux-gnu/libevent-2.1.so.7+0x1ff0e)
    #4 0x7f8ecd8e6000 in start_thread
SUMMARY: AddressSanitizer: heap-use-after-free ../../src/pool/server.c:674 in handle_internal_msg
"""
UBSAN_SAMPLE = ("../../src/pool/frontend.c:12:5: runtime error: signed integer overflow\n"
                "    #0 0x55 in on_bind ../../src/pool/frontend.c:12\n")


def test_sanitizer_reports_name_the_first_frames():
    """The harness fails a test on a sanitizer report and names where it is."""
    import harness
    reps = harness.sanitizer_reports(ASAN_SAMPLE)
    assert len(reps) == 1
    assert "heap-use-after-free" in reps[0]
    assert ("handle_internal_msg server.c:674 <- server_read_cb server.c:762 <- "
            "read_cb rbuf.c:36") in reps[0]
    reps = harness.sanitizer_reports(UBSAN_SAMPLE + ASAN_SAMPLE)
    assert len(reps) == 2 and "runtime error: signed integer overflow" in reps[0]
    assert "on_bind frontend.c:12" in reps[0]
    assert harness.sanitizer_reports("ts=1 level=info event=listen\n") == []
