"""Bad input from clients: each case gets a clear error or a close (with a
log line where the contract says so), and pgmux keeps serving afterwards."""

import os
import random
import socket
import struct
import time

import pytest

import pgwire
from harness import DB, HOST, PASSWORDS

BAD_LENGTHS = [0, 3, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
LOGIN_FAIL_CODES = {"08P01", "28P01", "28000"}


def summary(msgs):
    return [(t, pgwire.parse_error_fields(p)) if t in "EN" else t for t, p in msgs]


def assert_rejected(w, codes=("08P01",), timeout=5.0, require_error=True, already=None):
    """The connection must end (EOF) within TIMEOUT; every ErrorResponse on
    the way must carry one of CODES, and there must be one if
    REQUIRE_ERROR. ALREADY = (msgs, closed) read earlier. Returns the
    messages."""
    if already and already[1]:
        msgs, closed = already
    else:
        msgs, closed = w.read_until_close(timeout)
        if already:
            msgs = already[0] + msgs
    errs = pgwire.errors_in(msgs)
    assert closed, "pgmux did not close the connection within %.1fs; got %r" % (
        timeout, summary(msgs))
    if require_error:
        assert errs, "closed without an ErrorResponse; got %r" % summary(msgs)
    for e in errs:
        assert e.get("C") in codes, "unexpected error %r (wanted %r)" % (e, codes)
    unexpected = [t for t, _ in msgs if t not in "ENR"]
    assert not unexpected, "unexpected messages %r" % summary(msgs)
    return msgs


def start_scram(mux):
    """A raw connection that has sent its startup packet and received the
    SASL mechanism list."""
    w = mux.wire()
    w.send(pgwire.startup_packet({"user": "app", "database": DB}))
    t, payload = w.recv_msg()
    assert t == "R" and pgwire.parse_auth(payload)[0] == 10, (t, payload)
    return w


# --------------------------------------------------------------------------
# startup packet


def test_oversized_startup_packet(mux):
    params = {"user": "app", "database": DB, "application_name": "x" * 20000}
    packet = pgwire.startup_packet(params)
    assert len(packet) > 10000
    w = mux.wire()
    with w:
        w.send(packet[:8])      # the header alone says 20 kB
        first = w.read_until_close(1.0)
        if not first[1]:
            w.try_send(packet[8:])
        assert_rejected(w, already=first)
    mux.assert_serves()


@pytest.mark.parametrize("length", [0, 3, 4, 7] + BAD_LENGTHS[2:])
def test_startup_length_field_fuzz(mux, length):
    w = mux.wire()
    with w:
        w.send(struct.pack("!II", length & 0xFFFFFFFF, pgwire.PROTO_3_0) + b"user\0app\0\0")
        assert_rejected(w)
    mux.assert_serves()


@pytest.mark.parametrize("case", [
    "no-terminator", "key-without-value", "no-user", "huge-database-name",
    "protocol-2.0", "protocol-4.0",
])
def test_malformed_startup_packet(mux, case):
    good = {"user": "app", "database": DB}
    if case == "no-terminator":
        packet = pgwire.startup_packet(good)[:-1]
        packet = struct.pack("!I", len(packet)) + packet[4:]
        codes = ("08P01",)
    elif case == "key-without-value":
        body = struct.pack("!I", pgwire.PROTO_3_0) + b"user\0app\0database\0"
        packet = struct.pack("!I", len(body) + 4) + body
        codes = ("08P01",)
    elif case == "no-user":
        packet = pgwire.startup_packet({"database": DB})
        codes = ("28000", "08P01")
    elif case == "huge-database-name":
        packet = pgwire.startup_packet({"user": "app", "database": "d" * 5000})
        codes = ("3D000", "08P01", "42622")
    elif case == "protocol-2.0":
        packet = pgwire.startup_packet(good, major=2, minor=0)
        codes = ("0A000", "08P01")
    else:
        packet = pgwire.startup_packet(good, major=4, minor=0)
        codes = ("0A000", "08P01")
    w = mux.wire()
    with w:
        w.send(packet)
        assert_rejected(w, codes=codes)
    mux.assert_serves()


def test_password_packet_before_startup(mux):
    w = mux.wire()
    with w:
        w.send(pgwire.password_cstr("app-secret"))
        assert_rejected(w, require_error=False)
    mux.assert_serves()


@pytest.mark.parametrize("payload", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    # a TLS ClientHello (direct TLS, which pgmux does not offer)
    bytes.fromhex("160301002c010000280303") + b"\0" * 40,
    b"\xff" * 64,
    b"\x00\x00\x00\x08\x12\x34\x56\x78",      # unknown request code
], ids=["http", "tls-hello", "ff-bytes", "unknown-code"])
def test_garbage_bytes(mux, payload):
    mark = mux.log_mark()
    w = mux.wire()
    with w:
        w.send(payload)
        assert_rejected(w, codes=("08P01", "0A000"), require_error=False)
    mux.wait_for_log(r"event=protocol_error\b", since=mark)
    mux.assert_serves()


def test_bad_cancel_requests(mux):
    for packet in (pgwire.cancel_request(12345, 67890),
                   struct.pack("!II", 12, pgwire.CANCEL_REQUEST_CODE) + b"\0\0\0\1"):
        w = mux.wire()
        with w:
            w.send(packet)
            msgs, closed = w.read_until_close(3)
            assert closed, summary(msgs)
            assert not [t for t, _ in msgs if t != "E"], summary(msgs)
    mux.assert_serves()


# --------------------------------------------------------------------------
# message headers before and after authentication


@pytest.mark.parametrize("length", BAD_LENGTHS)
def test_message_length_fuzz_during_auth(mux, length):
    w = start_scram(mux)
    with w:
        w.send(b"p" + struct.pack("!I", length) + b"SCRAM-SHA-256\0")
        assert_rejected(w)
    mux.assert_serves()


@pytest.mark.parametrize("length", BAD_LENGTHS)
def test_message_length_fuzz_after_auth(mux, length):
    w, _ = mux.wire_login()
    with w:
        w.send(b"Q" + struct.pack("!I", length) + b"SELECT 1\0")
        assert_rejected(w)
    mux.assert_serves()


@pytest.mark.parametrize("length", BAD_LENGTHS)
def test_message_length_fuzz_inside_transaction(mux, length):
    w, _ = mux.wire_login()
    with w:
        assert w.check_query("BEGIN").status == "T"
        w.send(b"P" + struct.pack("!I", length) + b"\0SELECT 1\0\0\0")
        assert_rejected(w)
    mux.assert_serves()


# --------------------------------------------------------------------------
# SCRAM exchange


@pytest.mark.parametrize("data_len,data", [
    (-1, b""),
    (0, b""),
    (0x7FFFFFFF, b"n,,n=,r=abc"),
    (0xFFFFFFFF, b"n,,n=,r=abc"),
    (0x80000000, b"n,,n=,r=abc"),
    (5, b"n,,n=,r=abcdefgh"),
    (100, b"n,,n=,r=abc"),
], ids=["minus1-nodata", "zero", "7fffffff", "ffffffff-with-data", "80000000",
        "shorter-than-data", "longer-than-data"])
def test_sasl_initial_response_length_fuzz(mux, data_len, data):
    w = start_scram(mux)
    with w:
        w.send(pgwire.sasl_initial_response("SCRAM-SHA-256", data, data_len=data_len))
        if data_len == 0xFFFFFFFF and not data:
            # -1 is the protocol's "no initial response": an error, or a
            # (empty) challenge, are both fine; hanging is not
            msgs, closed = w.read_until_close(3)
            assert closed or msgs, "no answer to SASLInitialResponse with length -1"
            for e in pgwire.errors_in(msgs):
                assert e.get("C") in LOGIN_FAIL_CODES, e
        else:
            assert_rejected(w, codes=LOGIN_FAIL_CODES, timeout=3)
    mux.assert_serves()


def test_sasl_initial_response_truncated_inside(mux):
    w = start_scram(mux)
    with w:
        # the message ends in the middle of the Int32 length
        w.send(pgwire.msg("p", b"SCRAM-SHA-256\0\0\0"))
        assert_rejected(w, codes=LOGIN_FAIL_CODES, timeout=3)
    mux.assert_serves()


def test_sasl_initial_response_truncated_then_silence(pgmux):
    mux = pgmux(client_login_timeout=2)
    w = start_scram(mux)
    with w:
        full = pgwire.sasl_initial_response("SCRAM-SHA-256", "n,,n=,r=abcdefghijkl")
        w.send(full[:12])
        t0 = time.monotonic()
        # closed at once or at client_login_timeout; never left hanging
        assert_rejected(w, codes=LOGIN_FAIL_CODES | {"57P05", "08006"}, timeout=6,
                        require_error=False)
        assert time.monotonic() - t0 < 5
    mux.assert_serves()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256-PLUS", "PLAIN", ""])
def test_sasl_unknown_mechanism(mux, mechanism):
    w = start_scram(mux)
    with w:
        w.send(pgwire.sasl_initial_response(mechanism, "n,,n=,r=abcdefghijkl"))
        assert_rejected(w, codes=LOGIN_FAIL_CODES, timeout=3)
    mux.assert_serves()


@pytest.mark.parametrize("tamper", [
    "wrong-nonce", "cbind-y-after-n", "cbind-p", "short-proof", "trailing-garbage",
    "wrong-password",
])
def test_scram_client_final_tampering(mux, tamper):
    w = start_scram(mux)
    with w:
        scram = pgwire.ScramClient(PASSWORDS["app"] if tamper != "wrong-password" else "bad")
        w.send(pgwire.sasl_initial_response("SCRAM-SHA-256", scram.first_message()))
        t, payload = w.recv_msg()
        code, data = pgwire.parse_auth(payload)
        assert t == "R" and code == 11
        server_first = data.decode()
        kw = {}
        if tamper == "wrong-nonce":
            kw["nonce"] = scram.cnonce + "forged"
        elif tamper == "cbind-y-after-n":
            kw["cbind"] = "eSws"
        elif tamper == "cbind-p":
            kw["cbind"] = "cD10bHMtc2VydmVyLWVuZC1wb2ludCws"
        elif tamper == "short-proof":
            kw["proof"] = "AAAAAAAAAAAAAAAAAAAAAA=="
        elif tamper == "trailing-garbage":
            kw["extra"] = ",x=garbage"
        w.send(pgwire.password_message(scram.final_message(server_first, **kw)))
        msgs = assert_rejected(w, codes=LOGIN_FAIL_CODES, timeout=3)
        if tamper == "wrong-password":
            assert [e.get("C") for e in pgwire.errors_in(msgs)] == ["28P01"]
        assert not any(t == "R" and pgwire.parse_auth(p)[0] == 0 for t, p in msgs), \
            "pgmux accepted a tampered SCRAM exchange"
    mux.assert_serves()


@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5"])
def test_wrong_password_then_serves(pgmux, auth_type):
    mux = pgmux(auth_type=auth_type)
    for _ in range(3):
        with pytest.raises(pgwire.PgError) as ei:
            mux.wire_login(password="definitely-wrong")
        assert ei.value.sqlstate == "28P01"
    mux.assert_serves()


# --------------------------------------------------------------------------
# slow clients


def test_login_timeout(pgmux):
    mux = pgmux(client_login_timeout=1)
    mark = mux.log_mark()
    silent = mux.wire()
    half = mux.wire()
    half.send(pgwire.startup_packet({"user": "app", "database": DB})[:6])
    in_auth = start_scram(mux)
    t0 = time.monotonic()
    try:
        for name, w in (("silent", silent), ("half-startup", half), ("mid-SCRAM", in_auth)):
            msgs, closed = w.read_until_close(max(0.1, t0 + 5 - time.monotonic()))
            elapsed = time.monotonic() - t0
            assert closed, "%s client still connected after %.1fs" % (name, elapsed)
            assert elapsed >= 0.7, "%s client closed after only %.2fs" % (name, elapsed)
            assert not [t for t, _ in msgs if t != "E"], summary(msgs)
    finally:
        for w in (silent, half, in_auth):
            w.close()
    mux.wait_for_log(r"event=login_timeout\b", since=mark)
    n = len(mux.log_lines(r"event=login_timeout\b", since=mark))
    assert n >= 3, "expected a login_timeout log line for each of 3 clients, found %d" % n
    mux.assert_serves()


@pytest.mark.timeout(90)
def test_many_garbage_connections(pgmux):
    mux = pgmux(client_login_timeout=2)
    mux.assert_serves()
    baseline = mux.fd_count()
    rng = random.Random(1234)
    good_prefix = pgwire.startup_packet({"user": "app", "database": DB})
    t0 = time.monotonic()
    for i in range(2000):
        s = socket.create_connection((HOST, mux.port), timeout=2)
        try:
            kind = i % 4
            if kind == 0:
                data = os.urandom(rng.randint(1, 64))
            elif kind == 1:
                data = good_prefix[:rng.randint(1, len(good_prefix) - 1)]
            elif kind == 2:
                data = struct.pack("!I", rng.choice([0, 3, 0x7FFFFFFF, 0xFFFFFFFF])) + \
                    os.urandom(rng.randint(0, 16))
            else:
                data = b""
            if data:
                try:
                    s.sendall(data)
                except OSError:
                    pass
            if rng.random() < 0.5:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            s.close()
        assert time.monotonic() - t0 < 60, "garbage loop too slow (stuck at %d)" % i
    mux.assert_serves()
    # every garbage connection is eventually closed: no descriptor leak
    deadline = time.monotonic() + 6
    while mux.fd_count() > baseline + 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert mux.fd_count() <= baseline + 5, \
        "pgmux holds %d fds, %d before the garbage" % (mux.fd_count(), baseline)
    with mux.connect() as c:
        assert c.execute("SELECT count(*) FROM pgbench_branches").fetchone()[0] == 1
