#!/usr/bin/python3
"""Turn recorded sessions (proxy.py's *.rec files) into fuzz seeds, and write
the hand-made seeds.

    make_seeds.py REC_DIR CORPUS_DIR [--merge FUZZ_BUILD_DIR] [--found DIR]

Writes into CORPUS_DIR/<harness>/ (tests/fuzz/corpus):
  fuzz_startup        each connection's startup-phase packets (SSLRequest,
                      StartupMessage or CancelRequest), as the client sent them
  fuzz_scram_server   client-first NUL client-final, the client's SCRAM
                      messages rewritten to the harness's fixed server side
                      (RFC 7677: "pencil", its salt, 4096, its server nonce)
                      with the proof recomputed, so they log in
  fuzz_scram_client   server-first NUL server-final, rewritten to the
                      harness's client nonce and the RFC salt, with a v= that
                      verifies
  fuzz_sqllex         every Query text and Parse query string
  fuzz_sqlscan        the same, with a piece-size byte in front (fuzz_sqlscan.c)
  fuzz_client_login   the client's bytes up to the end of its login
  fuzz_client_txn     the client's bytes after the login
  fuzz_server_stream  the server's bytes after the login's ReadyForQuery
  fuzz_proto          a mode byte (see fuzz_proto.c) + one of those streams
  fuzz_config, fuzz_authfile, and hand-written seeds of the above: from the
                      repository's files and the tables below
Captured seeds are named cap-<session>-<hash>, hand-written ones hand-<what>,
inputs a fuzz run found found-<sha1>: the first two kinds are replaced on
every run, the found- ones when --found is given; other files are left
alone.

--merge BUILD: for the parser harnesses (MERGED below) built in BUILD, keep
the hand-written seeds and only the captured ones that add coverage, then
the --found ones that add edges, with libFuzzer's -merge=1. --found DIR: DIR/<harness>/ holds inputs a long fuzz
run grew; those adding coverage are kept as found-<sha1>.
"""

import argparse
import base64
import glob
import hashlib
import hmac
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# The fixed sides of the SCRAM harnesses (fuzz_scram_server.c, fuzz_scram_client.c).
PASSWORD = b"pencil"
SALT_B64 = "W22ZaJ0SNY7soEsUEjb6gQ=="
ITER = 4096
SNONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
CNONCE = "rOprNGfwEbeRWgbNEkqO"

MAX_SEED = 64 * 1024
MAX_PROTO_SEED = 16 * 1024
HARNESSES = [
    "fuzz_startup", "fuzz_scram_server", "fuzz_scram_client", "fuzz_sqllex", "fuzz_sqlscan", "fuzz_config",
    "fuzz_authfile", "fuzz_proto", "fuzz_client_login", "fuzz_client_txn", "fuzz_server_stream",
    "fuzz_tls_negotiation",
]

# Harnesses whose corpus --merge minimises (the others take the captures whole).
MERGED = {"fuzz_startup", "fuzz_scram_server", "fuzz_scram_client", "fuzz_sqllex", "fuzz_sqlscan",
          "fuzz_config", "fuzz_authfile", "fuzz_proto"}

# ---- SCRAM ------------------------------------------------------------------


def _keys():
    salted = hashlib.pbkdf2_hmac("sha256", PASSWORD, base64.b64decode(SALT_B64), ITER)
    ck = hmac.new(salted, b"Client Key", "sha256").digest()
    sk = hmac.new(salted, b"Server Key", "sha256").digest()
    return ck, hashlib.sha256(ck).digest(), sk


CLIENT_KEY, STORED_KEY, SERVER_KEY = _keys()


def attrs(msg):
    """'a=x,b=y' -> [('a', 'x'), ('b', 'y')] (values may hold '=')."""
    out = []
    for part in msg.split(","):
        k, _, v = part.partition("=")
        out.append((k, v))
    return out


def server_seed(client_first, client_final):
    """Rewrite a captured client-first/client-final pair for fuzz_scram_server."""
    gs2_end = client_first.index(",", client_first.index(",") + 1) + 1
    bare = client_first[gs2_end:]
    cnonce = dict(attrs(bare))["r"]
    server_first = "r=%s%s,s=%s,i=%d" % (cnonce, SNONCE, SALT_B64, ITER)
    parts = [(k, v) for k, v in attrs(client_final) if k != "p"]
    parts = [(k, cnonce + SNONCE if k == "r" else v) for k, v in parts]
    without_proof = ",".join("%s=%s" % kv for kv in parts)
    am = ("%s,%s,%s" % (bare, server_first, without_proof)).encode()
    sig = hmac.new(STORED_KEY, am, "sha256").digest()
    proof = bytes(a ^ b for a, b in zip(CLIENT_KEY, sig))
    final = without_proof + ",p=" + base64.b64encode(proof).decode()
    return client_first.encode() + b"\0" + final.encode()


def client_seed(server_first):
    """Rewrite a captured server-first for fuzz_scram_client, with its final."""
    a = attrs(server_first)
    nonce = dict(a)["r"]
    snonce = nonce[20:] if len(nonce) > 20 else "x" + nonce
    new_first = "r=%s%s,s=%s,i=%d" % (CNONCE, snonce, SALT_B64, ITER)
    without_proof = "c=biws,r=%s%s" % (CNONCE, snonce)
    am = ("n=,r=%s,%s,%s" % (CNONCE, new_first, without_proof)).encode()
    v = base64.b64encode(hmac.new(SERVER_KEY, am, "sha256").digest()).decode()
    return new_first.encode() + b"\0" + ("v=" + v).encode()


# ---- recordings ---------------------------------------------------------------


def read_rec(path):
    with open(path, "rb") as f:
        data = f.read()
    recs, off = [], 0
    while off + 6 <= len(data):
        d, k = data[off:off + 1], data[off + 1:off + 2]
        (n,) = struct.unpack(">I", data[off + 2:off + 6])
        recs.append((d, k, data[off + 6:off + 6 + n]))
        off += 6 + n
    return recs


def cap_at_boundary(msgs, limit):
    """Concatenate whole messages up to LIMIT bytes."""
    out = b""
    for m in msgs:
        if len(out) + len(m) > limit:
            break
        out += m
    return out


class Seeds:
    def __init__(self):
        self.by_harness = {h: {} for h in HARNESSES}

    def add(self, harness, name, data):
        if not data:
            return
        h = hashlib.sha1(data).hexdigest()[:12]
        d = self.by_harness[harness]
        if any(v == data for v in d.values()):
            return
        d["%s-%s" % (name, h)] = data
        if harness == "fuzz_sqllex":
            # the streaming scanner gets the same texts, fed in pieces of K + 1
            k = [0, 2, 15, 255][len(self.by_harness["fuzz_sqlscan"]) % 4]
            self.add("fuzz_sqlscan", name, bytes([k]) + data)


def cstr(b, off):
    end = b.index(b"\0", off)
    return b[off:end], end + 1


def from_connection(seeds, label, recs):
    startup, login, txn, server_all, server_after = [], [], [], [], []
    auth_ok = ready = False
    sasl_client, sasl_server = [], []
    for d, k, p in recs:
        if d == b"F":
            if k == b"U":
                startup.append(p)
                login.append(p)
                continue
            if k != b"M":
                continue
            (login if not auth_ok else txn).append(p)
            t = p[:1]
            body = p[5:]
            if t == b"p" and not auth_ok:
                sasl_client.append(body)
            elif t == b"Q":
                seeds.add("fuzz_sqllex", "cap-%s" % label, body.rstrip(b"\0"))
            elif t == b"P":
                try:
                    _, off = cstr(body, 0)
                    q, _ = cstr(body, off)
                    seeds.add("fuzz_sqllex", "cap-%s" % label, q)
                except ValueError:
                    pass
        else:
            server_all.append(p)
            if ready:
                server_after.append(p)
            if k != b"M":
                continue
            t = p[:1]
            if t == b"R" and len(p) >= 9:
                (code,) = struct.unpack(">I", p[5:9])
                if code == 0:
                    auth_ok = True
                elif code in (11, 12):
                    sasl_server.append((code, p[9:]))
            elif t == b"Z" and auth_ok:
                ready = True
    tag = "cap-%s" % label
    seeds.add("fuzz_startup", tag, b"".join(startup))
    seeds.add("fuzz_client_login", tag, b"".join(login))
    seeds.add("fuzz_client_txn", tag, cap_at_boundary(txn, MAX_SEED))
    seeds.add("fuzz_server_stream", tag, cap_at_boundary(server_after, MAX_SEED))
    if len(sasl_client) >= 2:
        body = sasl_client[0]
        try:
            mech, off = cstr(body, 0)
            (n,) = struct.unpack(">I", body[off:off + 4])
            first = body[off + 4:off + 4 + n].decode()
            seeds.add("fuzz_scram_server", tag, server_seed(first, sasl_client[1].decode()))
        except (ValueError, KeyError, UnicodeDecodeError, struct.error):
            pass
    firsts = [m for c, m in sasl_server if c == 11]
    if firsts:
        try:
            seeds.add("fuzz_scram_client", tag, client_seed(firsts[0].decode()))
        except (KeyError, UnicodeDecodeError):
            pass
    # fuzz_proto: mode byte = framing | piece size << 2 (see fuzz_proto.c)
    piece = [0, 1, 7, 63][len(seeds.by_harness["fuzz_proto"]) % 4]
    seeds.add("fuzz_proto", tag, bytes([0 | piece << 2]) + cap_at_boundary(login[len(startup):], MAX_PROTO_SEED))
    seeds.add("fuzz_proto", tag, bytes([1 | piece << 2]) + cap_at_boundary(txn, MAX_PROTO_SEED))
    seeds.add("fuzz_proto", tag, bytes([2 | piece << 2]) + cap_at_boundary(
        [p for p in server_all if len(p) >= 5], MAX_PROTO_SEED))


# ---- hand-written seeds -------------------------------------------------------


def startup_packet(pairs, version=196608):
    body = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs) + b"\0"
    return struct.pack(">II", 8 + len(body), version) + body


def msg(t, body):
    return t + struct.pack(">I", 4 + len(body)) + body


def client_hello(alpn):
    """A real TLS ClientHello from Python's ssl module (random parts differ
    from run to run), with ALPN protocols ALPN (None: no ALPN)."""
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def tls_seeds(seeds):
    """fuzz_tls_negotiation: a mode byte (0x01 paced, 0x02 md5), then the
    client's stream; 0xF4 answers pgmux's password request rightly."""
    h = seeds.add
    ssl_req = struct.pack(">II", 8, 80877103)
    gss = struct.pack(">II", 8, 80877104)
    start = startup_packet([("user", "plain"), ("database", "db")])
    hello, bare = client_hello(["postgresql"]), client_hello(None)
    other = client_hello(["http/1.1"])
    t = "fuzz_tls_negotiation"
    h(t, "hand-ssl-alone", b"\x00" + ssl_req)
    h(t, "hand-ssl-then-plaintext-at-once", b"\x00" + ssl_req + start)
    h(t, "hand-ssl-then-plaintext-paced", b"\x01" + ssl_req + start)
    h(t, "hand-ssl-then-hello", b"\x01" + ssl_req + hello)
    h(t, "hand-gss-ssl-hello", b"\x01" + gss + ssl_req + hello)
    h(t, "hand-direct-alpn", b"\x01" + hello)
    h(t, "hand-direct-no-alpn", b"\x01" + bare)
    h(t, "hand-direct-wrong-alpn", b"\x01" + other)
    h(t, "hand-direct-hello-and-more", b"\x00" + hello + start)
    h(t, "hand-plaintext-login", b"\x01" + start + b"\xf4")
    h(t, "hand-plaintext-login-md5", b"\x03" + start + b"\xf4")
    h(t, "hand-gss-twice-then-plaintext", b"\x01" + gss + gss + start + b"\xf4")


def hand_seeds(seeds):
    tls_seeds(seeds)
    h = seeds.add
    ssl = struct.pack(">II", 8, 80877103)
    gss = struct.pack(">II", 8, 80877104)
    h("fuzz_startup", "hand-ssl-then-startup", ssl + startup_packet([("user", "app"), ("database", "appdb")]))
    h("fuzz_startup", "hand-gss-ssl-startup", gss + ssl + startup_packet([("user", "app")]))
    h("fuzz_startup", "hand-cancel", struct.pack(">IIII", 16, 80877102, 1234, 5678))
    h("fuzz_startup", "hand-v32-pq-opts", startup_packet(
        [("user", "app"), ("_pq_.test_option", "1"), ("_pq_.other", "x")], 196610))
    h("fuzz_startup", "hand-options", startup_packet(
        [("user", "app"), ("options", r"-c search_path=a\ b --work-mem=4MB -cstatement_timeout=5s"),
         ("application_name", "x"), ("Application_Name", "later wins")]))
    h("fuzz_startup", "hand-replication", startup_packet([("user", "app"), ("replication", "database")]))
    h("fuzz_startup", "hand-v2", startup_packet([("user", "app")], 131072))
    h("fuzz_startup", "hand-many-params", startup_packet([("user", "app")] + [("p%d" % i, "v") for i in range(70)]))
    h("fuzz_startup", "hand-many-pq-opts", startup_packet([("user", "app")] + [("_pq_.o%d" % i, "v") for i in range(70)]))
    h("fuzz_startup", "hand-long-names", startup_packet([("user", "u" * 63), ("database", "d" * 64)]))
    h("fuzz_startup", "hand-duplicates", startup_packet([("user", "a"), ("database", "b"), ("user", "c")]))

    rfc_first = "n,,n=user,r=" + CNONCE
    rfc_final = ("c=biws,r=" + CNONCE + SNONCE + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    h("fuzz_scram_server", "hand-rfc7677", (rfc_first + "\0" + rfc_final).encode())
    h("fuzz_scram_server", "hand-y-flag", server_seed("y,,n=,r=abcdefghijkl", "c=eSws,r=x,p=AAAA"))
    h("fuzz_scram_server", "hand-extensions", server_seed("n,,n=,r=abc,x=ext", "c=biws,r=x,z=ext,p=AAAA"))
    h("fuzz_scram_server", "hand-channel-binding", b"p=tls-server-end-point,,n=,r=abc")
    h("fuzz_scram_server", "hand-authzid", b"n,a=someone,n=,r=abc")
    h("fuzz_scram_client", "hand-fixed", client_seed("r=" + CNONCE + "serverpart,s=x,i=1"))
    h("fuzz_scram_client", "hand-error", ("r=%sabc,s=%s,i=%d\0e=invalid-proof" % (CNONCE, SALT_B64, ITER)).encode())
    h("fuzz_scram_client", "hand-other-salt", ("r=%sabc,s=QUJDRA==,i=10000" % CNONCE).encode())

    for q in [
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET LOCAL ROLE admin; SET ROLE NONE; RESET ROLE; SET SESSION AUTHORIZATION DEFAULT",
        "SELECT set_config('search_path', 'a', false), set_config($1, $2, $3)",
        "CREATE TEMP TABLE t AS SELECT 1; CREATE TABLE pg_temp.x (a int); SELECT 1 INTO TEMP y",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1; LOAD 'auto_explain'",
        "PREPARE TRANSACTION 'gid'; COMMIT PREPARED 'gid'; ROLLBACK PREPARED 'gid'",
        "ROLLBACK WORK TO SAVEPOINT \"Sp\"; RELEASE SAVEPOINT sp; SAVEPOINT U&\"d\\0061t\"",
        "select E'\\x41\\u00e9\\U0001F600\\101\\'' as a, U&'d\\0061t\\+000061' UESCAPE '!'",
        "CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 1 END; END; SELECT 2",
        "SELECT pg_try_advisory_lock_shared(1), pg_advisory_xact_lock(2), \"pg_advisory_lock\"(3)",
        ";;;" + "SELECT 1;" * 70,
        "SET search_path = \"Quoted\", 'str', E'e\\'s', x.y.z TO DEFAULT",
        "LISTEN \"Chan\"; UNLISTEN *; NOTIFY c; DISCARD ALL; RESET ALL; DEALLOCATE PREPARE ALL",
        "/* unterminated", "'unterminated", "$$unterminated", "$a$ body $a",
    ]:
        h("fuzz_sqllex", "hand-" + hashlib.sha1(q.encode()).hexdigest()[:8], q.encode())

    # config: etc/pgmux.ini and the unit test fixtures
    for path in [os.path.join(ROOT, "etc", "pgmux.ini")] + sorted(
            glob.glob(os.path.join(ROOT, "tests", "unit", "fixtures", "config", "*.ini"))):
        with open(path, "rb") as f:
            data = f.read()
        # the fixtures' auth_file names do not exist next to the scratch file
        h("fuzz_config", "hand-" + os.path.basename(path).replace(".ini", ""), data)
    h("fuzz_config", "hand-minimal", b"[pgmux]\nauth_type = trust\n[database.app]\n")
    h("fuzz_config", "hand-auth-file-device", b"[pgmux]\nauth_file = /dev/null\n[database.app]\n")
    h("fuzz_config", "hand-auth-file-dir", b"[pgmux]\nauth_file = /\n[database.app]\n")
    h("fuzz_config", "hand-many-dbs", b"[pgmux]\nauth_type = trust\n" + b"".join(
        b"[database.db%d]\nport = %d\n" % (i, 5000 + i) for i in range(40)))
    h("fuzz_config", "hand-full", b"""\xef\xbb\xbf; comment
[pgmux]
listen_addr = 127.0.0.1   ; inline comment
listen_port = 6432
workers = 2
pool_mode = session
session_pinning = deny
auth_type = md5
auth_file = userlist.txt
max_client_conn = 100
default_pool_size = 5
min_pool_size = 1
connection_borrow_timeout = 10
max_prepared_statements = 50
idle_client_timeout = 0
server_idle_timeout = 60
server_lifetime = 0
server_connect_timeout = 3
client_login_timeout = 5
shutdown_timeout = 0
log_level = DEBUG
# hash comment
[database.app]
host = localhost
port = 5433
dbname = appdb
pool_size = 3
min_pool_size = 2
session_pinning = allow

[ database.other ]
  host : 10.0.0.1
""")

    for path in [os.path.join(ROOT, "etc", "userlist.txt")] + sorted(
            glob.glob(os.path.join(ROOT, "tests", "unit", "fixtures", "authfile", "*.txt"))):
        with open(path, "rb") as f:
            h("fuzz_authfile", "hand-" + os.path.basename(path).replace(".txt", ""), f.read())
    h("fuzz_authfile", "hand-mixed", b"""\xef\xbb\xbf"app" "plain password"
  "md5user"\t"md5""" + hashlib.md5(b"secretmd5user").hexdigest().encode() + b""""
"scram" "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
"quote""d" "pass""word" trailing junk
; comment line
"crlf"  "x"\r
""")

    h("fuzz_authfile", "hand-many-users", b"".join(b'"user%d" "password%d"\n' % (i, i) for i in range(100)))

    # proto: typed messages of every direction, a mode byte in front
    err = b"SERROR\0VERROR\0C42P01\0Mrelation does not exist\0Fparse.c\0L1\0Rparser\0\0"
    h("fuzz_proto", "hand-server-error", bytes([2]) + msg(b"E", err) + msg(b"N", err) + msg(b"Z", b"I"))
    h("fuzz_proto", "hand-server-login", bytes([2 | 3 << 2]) + msg(b"R", struct.pack(">I", 0)) +
      msg(b"S", b"client_encoding\0UTF8\0") + msg(b"K", struct.pack(">II", 1, 2)) + msg(b"Z", b"I"))
    h("fuzz_proto", "hand-client-ext", bytes([1 | 1 << 2]) + msg(b"P", b"s1\0SELECT $1\0\0\1\0\0\0\x17") +
      msg(b"B", b"\0s1\0\0\1\0\1\0\1\0\0\0\4\0\0\0\7\0\1\0\1") + msg(b"D", b"P\0") +
      msg(b"E", b"\0\0\0\0\0") + msg(b"S", b""))
    h("fuzz_proto", "hand-client-login", bytes([0]) + msg(b"p", b"SCRAM-SHA-256\0" + struct.pack(">I", 5) + b"n,,n="))


# ---- merge ---------------------------------------------------------------------


def merge(binary, hand_dir, extra_dirs, out_dir):
    """Fill OUT_DIR with HAND_DIR's files plus those of EXTRA_DIRS, a list of
    (dir, counters), that add coverage (libFuzzer -merge=1; with counters,
    hit counts count as coverage too, else only edges). Returns the sha1s of
    the files kept."""
    for f in os.listdir(hand_dir):
        shutil.copy(os.path.join(hand_dir, f), out_dir)
    for d, counters in extra_dirs:
        if not os.listdir(d):
            continue
        env = dict(os.environ, TMPDIR=tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
        subprocess.run([binary, "-merge=1", "-use_counters=%d" % counters, out_dir, d], check=True,
                       env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(env["TMPDIR"], ignore_errors=True)
    kept = set()
    for f in os.listdir(out_dir):
        with open(os.path.join(out_dir, f), "rb") as fh:
            kept.add(hashlib.sha1(fh.read()).hexdigest())
    return kept


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("rec_dir")
    ap.add_argument("corpus_dir")
    ap.add_argument("--merge", metavar="FUZZ_BUILD_DIR")
    ap.add_argument("--found", metavar="DIR")
    args = ap.parse_args()

    captured = Seeds()
    for path in sorted(glob.glob(os.path.join(args.rec_dir, "*.rec"))):
        label = os.path.basename(path).rsplit("-", 1)[0]
        from_connection(captured, label, read_rec(path))
    hand = Seeds()
    hand_seeds(hand)

    for harness in HARNESSES:
        out = os.path.join(args.corpus_dir, harness)
        os.makedirs(out, exist_ok=True)
        for f in os.listdir(out):
            if f.startswith(("cap-", "hand-")) or (args.found and f.startswith("found-")):
                os.unlink(os.path.join(out, f))
        cap, hd = captured.by_harness[harness], hand.by_harness[harness]
        found = {}
        if args.found and os.path.isdir(os.path.join(args.found, harness)):
            for f in os.listdir(os.path.join(args.found, harness)):
                with open(os.path.join(args.found, harness, f), "rb") as fh:
                    data = fh.read()
                found["found-" + hashlib.sha1(data).hexdigest()] = data
        # the data-path harnesses' seeds are raw captures, few enough as they are
        binary = os.path.join(args.merge, harness) if args.merge and harness in MERGED else None
        if binary and os.access(binary, os.X_OK):
            with tempfile.TemporaryDirectory() as tmp:
                dirs = {}
                for kind, seeds in (("hand", hd), ("cap", cap), ("found", found)):
                    dirs[kind] = os.path.join(tmp, kind)
                    os.makedirs(dirs[kind])
                    for name, data in seeds.items():
                        with open(os.path.join(dirs[kind], name), "wb") as fh:
                            fh.write(data)
                merged = os.path.join(tmp, "merged")
                os.makedirs(merged)
                # real traffic is worth more than its edges: hit counts count there;
                # a fuzz run's finds only for new edges (a few hundred files, not
                # thousands)
                kept = merge(binary, dirs["hand"], [(dirs["cap"], 1), (dirs["found"], 0)], merged)
            cap = {n: d for n, d in cap.items() if hashlib.sha1(d).hexdigest() in kept}
            found = {n: d for n, d in found.items() if hashlib.sha1(d).hexdigest() in kept}
        for name, data in list(hd.items()) + list(cap.items()) + list(found.items()):
            with open(os.path.join(out, name), "wb") as fh:
                fh.write(data)
        total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
        print("make_seeds: %-20s %4d files, %7d bytes (%d hand, %d captured, %d found)%s" % (
            harness, len(os.listdir(out)), total, len(hd), len(cap), len(found),
            ", merged" if binary and os.access(binary, os.X_OK) else ""))


if __name__ == "__main__":
    sys.exit(main())
