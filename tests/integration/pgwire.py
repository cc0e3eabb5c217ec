"""A small raw PostgreSQL wire-protocol client for the integration tests.

Plain sockets and struct: builders for every frontend message the tests
send (well-formed or deliberately broken), a reader that splits the backend
stream into (type, payload) messages, parsers for the backend messages the
tests inspect, and client-side SCRAM-SHA-256 / MD5 / cleartext login.

Every socket operation has a timeout, so no test can hang on a silent peer.
Nothing here knows about pgmux: the harness self-check points it at
PostgreSQL directly.
"""

import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTO_3_0 = 196608          # 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

DEFAULT_TIMEOUT = 5.0


# --------------------------------------------------------------------------
# Errors


class ProtocolError(Exception):
    """The peer sent something this client cannot make sense of."""


class ConnectionClosed(Exception):
    """The peer closed the connection (EOF or reset)."""

    def __init__(self, msg="connection closed by peer", received=None):
        super().__init__(msg)
        self.received = received or []


class PgError(Exception):
    """An ErrorResponse. .fields maps the one-letter codes to strings."""

    def __init__(self, fields, messages=None):
        self.fields = fields
        self.messages = messages or []
        super().__init__("%s %s: %s" % (self.severity, self.sqlstate, self.message))

    @property
    def sqlstate(self):
        return self.fields.get("C")

    @property
    def severity(self):
        return self.fields.get("V") or self.fields.get("S")

    @property
    def message(self):
        return self.fields.get("M", "")


# --------------------------------------------------------------------------
# Frontend message builders (all return bytes)


def cstr(s):
    if isinstance(s, str):
        s = s.encode()
    return s + b"\0"


def msg(mtype, payload=b"", length=None):
    """A typed message. LENGTH overrides the Int32 length field (fuzzing)."""
    if isinstance(mtype, str):
        mtype = mtype.encode()
    if length is None:
        length = len(payload) + 4
    return mtype + struct.pack("!I", length & 0xFFFFFFFF) + payload


def startup_packet(params, major=3, minor=0, length=None):
    body = struct.pack("!I", (major << 16) | minor)
    for k, v in params.items():
        body += cstr(k) + cstr(v)
    body += b"\0"
    if length is None:
        length = len(body) + 4
    return struct.pack("!I", length & 0xFFFFFFFF) + body


def ssl_request():
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def gssenc_request():
    return struct.pack("!II", 8, GSSENC_REQUEST_CODE)


def cancel_request(pid, key):
    return struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid & 0xFFFFFFFF, key & 0xFFFFFFFF)


def query(sql):
    return msg("Q", cstr(sql))


def parse(name, sql, param_types=()):
    payload = cstr(name) + cstr(sql) + struct.pack("!H", len(param_types))
    for oid in param_types:
        payload += struct.pack("!I", oid)
    return msg("P", payload)


def bind(portal="", stmt="", params=(), param_formats=(), result_formats=()):
    payload = cstr(portal) + cstr(stmt)
    payload += struct.pack("!H", len(param_formats))
    for f in param_formats:
        payload += struct.pack("!H", f)
    payload += struct.pack("!H", len(params))
    for p in params:
        if p is None:
            payload += struct.pack("!i", -1)
        else:
            if isinstance(p, str):
                p = p.encode()
            payload += struct.pack("!i", len(p)) + p
    payload += struct.pack("!H", len(result_formats))
    for f in result_formats:
        payload += struct.pack("!H", f)
    return msg("B", payload)


def describe(kind, name=""):
    """KIND is 'S' (statement) or 'P' (portal)."""
    return msg("D", kind.encode() + cstr(name))


def execute(portal="", max_rows=0):
    return msg("E", cstr(portal) + struct.pack("!I", max_rows))


def close(kind, name=""):
    return msg("C", kind.encode() + cstr(name))


def sync():
    return msg("S")


def flush():
    return msg("H")


def terminate():
    return msg("X")


def copy_data(data):
    return msg("d", data)


def copy_done():
    return msg("c")


def copy_fail(reason="client abort"):
    return msg("f", cstr(reason))


def password_message(data):
    """PasswordMessage / SASLResponse: type 'p' with raw DATA."""
    if isinstance(data, str):
        data = data.encode()
    return msg("p", data)


def password_cstr(password):
    return password_message(cstr(password))


def sasl_initial_response(mechanism, data, data_len=None, length=None):
    """SASLInitialResponse. DATA_LEN overrides the inner Int32 (fuzzing);
    -1 means 'no initial response' and is sent with no data."""
    if isinstance(data, str):
        data = data.encode()
    if data_len is None:
        data_len = len(data)
    payload = cstr(mechanism) + struct.pack("!I", data_len & 0xFFFFFFFF) + data
    return msg("p", payload, length=length)


# --------------------------------------------------------------------------
# Backend message parsers


def parse_error_fields(payload):
    """ErrorResponse / NoticeResponse body -> {code: value}."""
    fields = {}
    i = 0
    while i < len(payload) and payload[i] != 0:
        code = chr(payload[i])
        end = payload.index(b"\0", i + 1)
        fields[code] = payload[i + 1:end].decode("utf-8", "replace")
        i = end + 1
    return fields


def parse_data_row(payload):
    (n,) = struct.unpack_from("!H", payload, 0)
    off = 2
    cols = []
    for _ in range(n):
        (ln,) = struct.unpack_from("!i", payload, off)
        off += 4
        if ln < 0:
            cols.append(None)
        else:
            cols.append(payload[off:off + ln].decode("utf-8", "replace"))
            off += ln
    return cols


def parse_parameter_status(payload):
    parts = payload.split(b"\0")
    return parts[0].decode(), parts[1].decode()


def parse_backend_key(payload):
    pid, key = struct.unpack_from("!II", payload, 0)
    return pid, key


def parse_negotiate(payload):
    """NegotiateProtocolVersion -> (newest_minor, [unrecognised options])."""
    minor, n = struct.unpack_from("!II", payload, 0)
    opts = payload[8:].split(b"\0")[:n]
    return minor, [o.decode() for o in opts]


def parse_auth(payload):
    (code,) = struct.unpack_from("!I", payload, 0)
    return code, payload[4:]


def parse_command_complete(payload):
    return payload.rstrip(b"\0").decode()


# --------------------------------------------------------------------------
# SCRAM-SHA-256 and MD5, client side


def _hmac(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def _h(data):
    return hashlib.sha256(data).digest()


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def md5_password_hash(password, user):
    """The stored form: 'md5' + md5hex(password + user)."""
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def md5_response(password, user, salt):
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def scram_verifier(password, salt=None, iterations=4096):
    """A PostgreSQL-style verifier 'SCRAM-SHA-256$iter:salt$stored:server'."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = _h(_hmac(salted, b"Client Key"))
    server = _hmac(salted, b"Server Key")
    b64 = lambda b: base64.b64encode(b).decode()
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored), b64(server))


class ScramClient:
    """One SCRAM-SHA-256 exchange (no channel binding). Tests may tamper with
    the final message through final_message()'s keyword arguments."""

    def __init__(self, password, nonce=None):
        self.password = password
        self.cnonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = "n=,r=" + self.cnonce
        self.server_first = None
        self.server_signature = None

    def first_message(self):
        return "n,," + self.client_first_bare

    def final_message(self, server_first, nonce=None, cbind="biws", proof=None,
                      extra=""):
        self.server_first = server_first
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        full_nonce = attrs["r"]
        if not full_nonce.startswith(self.cnonce):
            raise ProtocolError("SCRAM server nonce does not start with ours")
        salt = base64.b64decode(attrs["s"])
        iters = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iters)
        client_key = _hmac(salted, b"Client Key")
        stored_key = _h(client_key)
        server_key = _hmac(salted, b"Server Key")
        without_proof = "c=%s,r=%s" % (cbind, nonce if nonce is not None else full_nonce)
        auth_message = ",".join([self.client_first_bare, server_first, without_proof])
        sig = _hmac(stored_key, auth_message.encode())
        if proof is None:
            proof = base64.b64encode(_xor(client_key, sig)).decode()
        self.server_signature = base64.b64encode(
            _hmac(server_key, auth_message.encode())).decode()
        return without_proof + ",p=" + proof + extra

    def verify_server_final(self, server_final):
        attrs = dict(kv.split("=", 1) for kv in server_final.split(","))
        if attrs.get("v") != self.server_signature:
            raise ProtocolError("SCRAM server signature mismatch")


# --------------------------------------------------------------------------
# The connection


class LoginResult:
    def __init__(self):
        self.messages = []          # every (type, payload) before ReadyForQuery
        self.auth_codes = []        # Authentication request codes seen, in order
        self.sasl_mechanisms = []
        self.params = {}            # ParameterStatus
        self.backend_key = None     # (pid, key)
        self.negotiate = []         # [(minor, [options])]
        self.status = None          # ReadyForQuery status

    def types(self):
        return [t for t, _ in self.messages]


class QueryResult:
    def __init__(self):
        self.messages = []
        self.rows = []              # DataRow values as lists of str/None
        self.errors = []            # list of field dicts
        self.notices = []
        self.params = {}
        self.tags = []
        self.status = None          # last ReadyForQuery status

    def types(self):
        return [t for t, _ in self.messages]

    @property
    def error(self):
        return self.errors[0] if self.errors else None

    def scalar(self):
        return self.rows[0][0]


class PgWire:
    """A raw protocol connection. recv_msg() returns (type_char, payload)."""

    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.eof = False

    # -- raw I/O ---------------------------------------------------------

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """Send, swallowing errors from a peer that already closed.
        Returns True if everything was sent."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            return False

    def _fill(self, deadline):
        if self.eof:
            raise ConnectionClosed()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for the peer")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            self.eof = True
            raise ConnectionClosed("connection reset by peer")
        if not chunk:
            self.eof = True
            raise ConnectionClosed()
        self.buf += chunk

    def read_bytes(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_msg(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            if len(self.buf) >= 5:
                mtype = chr(self.buf[0])
                (ln,) = struct.unpack_from("!I", self.buf, 1)
                if ln < 4 or ln > 1 << 30:
                    raise ProtocolError("bad backend message length %d (type %r)" % (ln, mtype))
                if len(self.buf) >= ln + 1:
                    payload = self.buf[5:ln + 1]
                    self.buf = self.buf[ln + 1:]
                    return mtype, payload
            self._fill(deadline)

    def pending(self, timeout=0.2):
        """Messages that arrive within TIMEOUT without asking (may be [])."""
        out = []
        while True:
            try:
                out.append(self.recv_msg(timeout=timeout))
            except socket.timeout:
                return out
            except ConnectionClosed:
                return out

    def read_until_close(self, timeout=None):
        """Read messages until EOF. Returns (messages, closed). closed is
        False if TIMEOUT passed first. Undecodable trailing bytes are kept
        in .buf."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        out = []
        while True:
            try:
                out.append(self.recv_msg(timeout=max(0.0, deadline - time.monotonic())))
            except ConnectionClosed:
                return out, True
            except socket.timeout:
                return out, False

    def wait_closed(self, timeout=None):
        _, closed = self.read_until_close(timeout)
        return closed

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Close with a TCP RST instead of a FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- startup and login -------------------------------------------------

    def request_encryption(self, packet):
        """Send an SSLRequest/GSSENCRequest and return the one-byte answer."""
        self.send(packet)
        return self.read_bytes(1)

    def login(self, user, database, password=None, params=None, minor=0,
              major=3, send_startup=True, scram_client=None):
        """Run the startup phase up to ReadyForQuery. Raises PgError on an
        ErrorResponse (with .messages holding what came before)."""
        res = LoginResult()
        if send_startup:
            p = {"user": user, "database": database}
            if params:
                p.update(params)
            self.send(startup_packet(p, major=major, minor=minor))
        scram = None
        while True:
            t, payload = self.recv_msg()
            res.messages.append((t, payload))
            if t == "E":
                raise PgError(parse_error_fields(payload), res.messages)
            if t == "v":
                res.negotiate.append(parse_negotiate(payload))
            elif t == "S":
                k, v = parse_parameter_status(payload)
                res.params[k] = v
            elif t == "K":
                res.backend_key = parse_backend_key(payload)
            elif t == "Z":
                res.status = payload.decode()
                return res
            elif t == "R":
                code, data = parse_auth(payload)
                res.auth_codes.append(code)
                if code == 0:
                    continue
                if password is None:
                    raise ProtocolError("server asked for a password (auth code %d)" % code)
                if code == 3:
                    self.send(password_cstr(password))
                elif code == 5:
                    self.send(password_cstr(md5_response(password, user, data[:4])))
                elif code == 10:
                    mechs = [m.decode() for m in data.split(b"\0") if m]
                    res.sasl_mechanisms = mechs
                    if "SCRAM-SHA-256" not in mechs:
                        raise ProtocolError("no SCRAM-SHA-256 in %r" % mechs)
                    scram = scram_client or ScramClient(password)
                    self.send(sasl_initial_response("SCRAM-SHA-256", scram.first_message()))
                elif code == 11:
                    self.send(password_message(scram.final_message(data.decode())))
                elif code == 12:
                    scram.verify_server_final(data.decode())
                else:
                    raise ProtocolError("unsupported auth code %d" % code)
            elif t == "N":
                continue
            else:
                raise ProtocolError("unexpected message %r during login" % t)

    # -- queries -------------------------------------------------------------

    def read_until_ready(self, res=None, count=1, timeout=None):
        """Collect messages until COUNT ReadyForQuery messages arrived."""
        res = res or QueryResult()
        seen = 0
        while seen < count:
            t, payload = self.recv_msg(timeout=timeout)
            res.messages.append((t, payload))
            if t == "D":
                res.rows.append(parse_data_row(payload))
            elif t == "E":
                res.errors.append(parse_error_fields(payload))
            elif t == "N":
                res.notices.append(parse_error_fields(payload))
            elif t == "S":
                k, v = parse_parameter_status(payload)
                res.params[k] = v
            elif t == "C":
                res.tags.append(parse_command_complete(payload))
            elif t == "Z":
                res.status = payload.decode()
                seen += 1
        return res

    def simple_query(self, sql, timeout=None):
        self.send(query(sql))
        return self.read_until_ready(timeout=timeout)

    def check_query(self, sql, timeout=None):
        """simple_query that raises PgError on an ErrorResponse."""
        res = self.simple_query(sql, timeout=timeout)
        if res.errors:
            raise PgError(res.errors[0], res.messages)
        return res

    def expect(self, *types, timeout=None):
        """Read len(TYPES) messages and check their types; returns them."""
        got = []
        for want in types:
            t, payload = self.recv_msg(timeout=timeout)
            got.append((t, payload))
            if t != want:
                detail = ""
                if t == "E":
                    detail = " %r" % parse_error_fields(payload)
                raise ProtocolError("expected %r, got %r%s (so far %r)"
                                    % (want, t, detail, [g[0] for g in got]))
        return got


def connect(host, port, user, database, password=None, params=None,
            timeout=DEFAULT_TIMEOUT, **kw):
    """Open a PgWire and log in; returns (conn, LoginResult)."""
    c = PgWire(host, port, timeout=timeout)
    try:
        res = c.login(user, database, password=password, params=params, **kw)
    except BaseException:
        c.close()
        raise
    return c, res


def errors_in(messages):
    return [parse_error_fields(p) for t, p in messages if t == "E"]
