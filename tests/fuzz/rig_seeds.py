#!/usr/bin/env python3
"""Hand-made seeds for the data-path fuzz harnesses (fuzz_client_txn,
fuzz_client_copy, fuzz_client_login, fuzz_server_stream), written as
corpus/<harness>/rig-<name>. Each is a realistic stream in the harness's
input format (see the comment at the top of each harness and rig.h for the
player's directives F0..FD), so that fuzzing starts deep: pipelines with
errors, prepared statements shared across clients, COPY in and out, SCRAM
and md5 logins, scripted server replies.

    python3 tests/fuzz/rig_seeds.py tests/fuzz/corpus

The rig-found-* seeds next to them were kept from long fuzz runs (a greedy
cover of the features they add); this script leaves them alone.
"""
import struct, os, sys
if len(sys.argv) != 2:
    sys.exit('usage: rig_seeds.py CORPUS_DIR')
root = sys.argv[1]
def msg(t, b=b''): return t.encode() + struct.pack('>I', len(b) + 4) + b
def s(x): return x.encode() + b'\0'
def Q(q): return msg('Q', s(q))
def P(n, q, nt=0): return msg('P', s(n) + s(q) + struct.pack('>H', nt) + b'\0\0\0\0' * nt)
def B(portal, st, params=(), fmts=(), rfmts=()):
    b = s(portal) + s(st) + struct.pack('>H', len(fmts)) + b''.join(struct.pack('>H', f) for f in fmts)
    b += struct.pack('>H', len(params))
    for p in params:
        if p is None: b += struct.pack('>i', -1)
        else: b += struct.pack('>I', len(p)) + p
    b += struct.pack('>H', len(rfmts)) + b''.join(struct.pack('>H', f) for f in rfmts)
    return msg('B', b)
def D(k, n): return msg('D', k.encode() + s(n))
def E(p, n=0): return msg('E', s(p) + struct.pack('>I', n))
def C(k, n): return msg('C', k.encode() + s(n))
S = msg('S'); H = msg('H'); X = msg('X')
def d(x): return msg('d', x)
c = msg('c')
def f(x): return msg('f', s(x))
def F(oid=1598): return msg('F', struct.pack('>IHH', oid, 0, 1) + struct.pack('>I', 1) + b'1' + struct.pack('>H', 0))
def startup(user, db='db', **kw):
    b = struct.pack('>I', 196608) + s('user') + s(user) + s('database') + s(db)
    for k, v in kw.items(): b += s(k) + s(v)
    b += b'\0'
    return struct.pack('>I', len(b) + 4) + b
SSL = struct.pack('>II', 8, 80877103)
GSS = struct.pack('>II', 8, 80877104)
def cancel(pid, key): return struct.pack('>IIII', 16, 80877102, pid, key)
def pw(p): return msg('p', s(p))
PAUSE = b'\xf0'
def slot(n): return b'\xf1' + bytes([n])
DISC = b'\xf2'
def chunk(n): return b'\xf3' + bytes([n])
AUTH_OK = b'\xf4'; AUTH_BAD = b'\xf5'; CANCEL = b'\xf6'
def login(u): return b'\xf7' + bytes([u])
def bigq(sz): return b'\xf8' + bytes([sz])
def bigb(sz, st): return b'\xf9' + bytes([sz, st])
def bigp(sz, st): return b'\xfa' + bytes([sz, st])
def bigd(sz): return b'\xfb' + bytes([sz])
def again(k): return b'\xfc' + bytes([k])
TURN = b'\xfd'
STALL = b'\xfe'

def write(h, name, data):
    d = os.path.join(root, h)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, 'rig-' + name), 'wb').write(data)

# ---- fuzz_client_txn
T = 'fuzz_client_txn'
write(T, 'simple', Q('SELECT 1') + PAUSE + Q('BEGIN') + Q('UPDATE t SET x = 1') + Q('COMMIT') + X)
write(T, 'multi', Q("SELECT 1; SET application_name = 'a'; SELECT many") + PAUSE + Q('RESET ALL') + Q('DISCARD ALL'))
write(T, 'extended', P('', 'SELECT $1', 1) + B('', '', [b'1']) + D('P', '') + E('', 0) + S + PAUSE +
      P('s1', 'SELECT generate_series(1, 3)') + D('S', 's1') + S + PAUSE +
      B('p1', 's1') + E('p1', 1) + H + PAUSE + E('p1', 0) + S + PAUSE + C('S', 's1') + C('P', 'p1') + S)
write(T, 'pipeline_error', P('', 'SELECT 1') + B('', '') + E('') + S + P('', 'SELECT error') + B('', '') + E('') + S +
      P('s2', 'SELECT 3') + B('', 's2') + E('') + S + PAUSE + Q('BEGIN') + B('', 's2') + E('') + S + Q('SELECT error') + Q('ROLLBACK'))
write(T, 'prepared_shared', P('a', 'SELECT 42') + S + PAUSE + slot(1) + P('b', 'SELECT 42') + S + B('', 'b') + E('') + S +
      PAUSE + slot(0) + B('', 'a') + E('') + S + C('S', 'a') + S + PAUSE + slot(1) + B('', 'b') + E('') + S)
write(T, 'deallocate', P('s1', 'SELECT 1') + P('s2', 'SELECT 2') + S + PAUSE + Q('DEALLOCATE s1') + P('d', 'DEALLOCATE s2') + B('', 'd') + E('') + S +
      PAUSE + Q('DEALLOCATE ALL') + P('s1', 'SELECT 1') + S)
write(T, 'txn_pinning', Q('BEGIN') + Q("SET LOCAL work_mem = '64kB'") + Q('COMMIT') + Q("PREPARE x AS SELECT 1") + Q('EXECUTE x') + Q('LISTEN ch') + Q("SELECT pg_advisory_lock(1)"))
write(T, 'deny_pinning', b'\x82' + Q('PREPARE x AS SELECT 1') + Q('CREATE TEMP TABLE t (a int)') + P('', 'LISTEN x') + B('', '') + E('') + S)
write(T, 'session_mode', b'\x81' + Q('SET search_path TO x') + Q('BEGIN') + Q('SELECT 1') + DISC + slot(1) + Q('SELECT 2'))
write(T, 'params', b'\x88' + Q('SELECT 1') + slot(1) + Q("SET DateStyle = 'German'") + Q('SELECT 2') + slot(2) + Q('SHOW DateStyle'))
write(T, 'evict', b'\x84' + P('a', 'SELECT 1') + P('b', 'SELECT 2') + P('c', 'SELECT 3') + S + B('', 'a') + E('') + B('', 'b') + E('') + B('', 'c') + E('') + S)
write(T, 'stale_retry', P('st', 'SELECT stale') + S + PAUSE + B('', 'st') + D('P', '') + E('') + S + PAUSE + Q('SELECT 1'))
write(T, 'cache_lookup', P('cl', "SELECT 'cache lookup'") + S + B('', 'cl') + E('') + S)
write(T, 'big_query', chunk(5) + bigq(6) + PAUSE + bigq(3) + Q('SELECT 1'))
write(T, 'big_bind', P('s1', 'SELECT $1', 1) + S + PAUSE + bigb(5, 1) + E('') + S + PAUSE + bigb(6, 0) + E('') + S)
write(T, 'big_parse', bigp(4, 2) + S + PAUSE + B('', 's2') + E('') + S)
write(T, 'function_call', F() + Q('SELECT 1'))
write(T, 'copy_in_txn', Q('COPY t FROM STDIN') + d(b'1\n') + d(b'2\n') + c + PAUSE + Q('SELECT 1'))
write(T, 'copy_out', Q('COPY t TO STDOUT') + Q('SELECT 1'))
write(T, 'unnamed_across', P('', 'SELECT 1') + D('S', '') + S + PAUSE + slot(1) + Q('BEGIN') + PAUSE + slot(0) + B('', '') + E('') + S + slot(1) + Q('COMMIT'))
write(T, 'flush_wait', P('', 'SELECT 1') + D('S', '') + H + PAUSE + slot(1) + Q('SELECT 2') + PAUSE + slot(0) + B('', '') + E('') + S)
write(T, 'disconnect_mid', b'\xc0' + Q('BEGIN') + Q('UPDATE t SET x = 1') + DISC + slot(1) + Q('SELECT 1'))
write(T, 'disconnect_ext', b'\xc0' + P('', 'SELECT 1') + B('', '') + H + PAUSE + DISC + slot(1) + Q('SELECT 1'))
write(T, 'garbage', msg('Z', b'I') + Q('SELECT 1'))
write(T, 'bad_length', b'Q\0\0\0\x02' + Q('SELECT 1'))
write(T, 'malformed', msg('P', b'noterm') + Q('SELECT 1'))
write(T, 'notice_notify', Q('SELECT notice, notify') + Q('SELECT big') + Q('SELECT huge'))
write(T, 'server_fatal', Q('SELECT fatal') + PAUSE + Q('SELECT 1'))
write(T, 'server_dies', Q('BEGIN') + Q('SELECT rig_die') + PAUSE + Q('SELECT 1') + Q('SELECT rig_half'))
write(T, 'many_pipelined', P('', 'SELECT 1') + B('', '') + E('') + S + again(63) + again(63) + Q('SELECT 1'))
write(T, 'savepoints', Q('BEGIN') + Q('SAVEPOINT a') + Q('SELECT error') + Q('ROLLBACK TO a') + Q('SELECT 1') + Q('COMMIT'))
write(T, 'chunked_1', b'\x90' + P('s', 'SELECT $1', 1) + B('', 's', [b'7']) + D('P', '') + E('') + S + Q('SELECT 1'))
write(T, 'captured_session', startup('app', 'app', application_name='psql') + pw('x') + Q('SELECT 1') + X)
write(T, 'describe_missing', D('S', 'nope') + S + B('', 'nope') + E('') + S + C('S', 'nope') + S)
write(T, 'dup_parse', P('a', 'SELECT 1') + P('a', 'SELECT 2') + S + P('a', 'SELECT 3') + S)
write(T, 'cancel', P('', 'SELECT 1') + B('', '') + E('') + CANCEL + S)
write(T, 'slow_client', b'\x80' + Q('SELECT huge') + STALL + PAUSE + STALL + PAUSE + Q('SELECT 1'))
write(T, 'slow_client_leaves', b'\x80' + Q('SELECT huge') + STALL + PAUSE + X + PAUSE)
write(T, 'pipelined_turns', b'\x80' + P('', 'SELECT 1') + B('', '') + TURN + E('') + S + TURN + Q('SELECT 2'))

# ---- fuzz_client_copy
T = 'fuzz_client_copy'
write(T, 'done', d(b'1\n') + d(b'2\n') + c + PAUSE + Q('SELECT 1'))
write(T, 'fail', d(b'1\n') + f('nope') + d(b'late\n') + c + Q('SELECT 1'))
write(T, 'ext_done', b'\x81' + d(b'1\n') + c + S + PAUSE + Q('SELECT 1'))
write(T, 'ext_fail', b'\x81' + d(b'1\n') + f('x') + S + PAUSE + Q('SELECT 1'))
write(T, 'ext_flush', b'\x89' + d(b'1\n') + c + S + S + Q('SELECT 1'))
write(T, 'in_txn', b'\x84' + d(b'1\n') + c + Q('COMMIT'))
write(T, 'multi', b'\x90' + d(b'1\n') + c + PAUSE + Q('SELECT 2'))
write(T, 'other_msg', Q('SELECT 1') + d(b'x\n') + c + Q('SELECT 2'))
write(T, 'sync_in_copy', S + H + d(b'1\n') + S + c + Q('SELECT 1'))
write(T, 'big', bigd(5) + bigd(6) + c)
write(T, 'chunked', b'\xa0' + d(b'1\n2\n3\n') + c)
write(T, 'disconnect', d(b'1\n') + DISC + slot(1) + Q('SELECT 1'))
write(T, 'session', b'\x82' + d(b'1\n') + c + DISC + slot(1) + Q('SELECT 1'))
write(T, 'garbage_in_copy', b'd\0\0\0\x01' + c)

# ---- fuzz_client_login
T = 'fuzz_client_login'
write(T, 'trust', startup('plain') + PAUSE + Q('SELECT 1') + X)
write(T, 'trust_unknown', startup('nobody'))
write(T, 'md5', b'\x01' + startup('plain') + AUTH_OK + PAUSE + Q('SELECT 1'))
write(T, 'md5_bad', b'\x01' + startup('plain') + AUTH_BAD)
write(T, 'md5_user', b'\x01' + startup('md5user') + AUTH_OK + Q('SELECT 1'))
write(T, 'md5_garbage', b'\x01' + startup('plain') + PAUSE + pw('md5deadbeef'))
write(T, 'scram', b'\x02' + startup('plain') + AUTH_OK + AUTH_OK + PAUSE + Q('SELECT 1'))
write(T, 'scram_verifier', b'\x02' + startup('scramuser') + AUTH_OK + AUTH_OK + PAUSE + Q('SELECT 1'))
write(T, 'scram_bad', b'\x02' + startup('plain') + AUTH_OK + AUTH_BAD)
write(T, 'scram_unknown', b'\x02' + startup('nobody') + AUTH_OK + AUTH_OK)
write(T, 'scram_garbage', b'\x02' + startup('plain') + PAUSE + msg('p', s('SCRAM-SHA-256') + struct.pack('>I', 5) + b'n,,n=') )
write(T, 'scram_md5user', b'\x02' + startup('md5user') + AUTH_OK + Q('SELECT 1'))
write(T, 'ssl_then_startup', SSL + startup('plain') + Q('SELECT 1'))
write(T, 'gss_ssl', GSS + SSL + startup('plain'))
write(T, 'cancel_bogus', cancel(1, 2))
write(T, 'cancel_real', startup('plain') + PAUSE + CANCEL + Q('SELECT 1'))
write(T, 'protocol_3_1', struct.pack('>I', 0) [:0] + (lambda b: struct.pack('>I', len(b) + 4) + b)(struct.pack('>I', 196609) + s('user') + s('plain') + s('_pq_.x') + s('1') + b'\0'))
write(T, 'params', startup('plain', application_name='a b', options='-c search_path=x --DateStyle=ISO', client_encoding='LATIN1') + Q('SELECT 1'))
write(T, 'bad_param', startup('plain', **{'role': 'x'}))
write(T, 'no_db', startup('plain', db='nodb'))
write(T, 'short', struct.pack('>I', 4))
write(T, 'terminate_in_auth', b'\x01' + startup('plain') + X)
write(T, 'wrong_msg_in_auth', b'\x01' + startup('plain') + Q('SELECT 1'))
write(T, 'be_cleartext', b'\x08' + startup('plain') + Q('SELECT 1'))
write(T, 'be_md5', b'\x10' + startup('plain') + Q('SELECT 1'))
write(T, 'be_scram', b'\x18' + startup('plain') + Q('SELECT 1'))
write(T, 'be_scram_verifier', b'\x1a' + startup('scramuser') + AUTH_OK + AUTH_OK + Q('SELECT 1'))
write(T, 'be_md5_md5user', b'\x11' + startup('md5user') + AUTH_OK + Q('SELECT 1'))
write(T, 'relogin', login(0) + Q('SELECT 1') + login(2) + Q('SELECT 2') + slot(1) + startup('plain'))
write(T, 'session', b'\x04' + startup('plain') + Q('BEGIN') + Q('SELECT 1'))

# ---- fuzz_server_stream (structured: header then ops)
T = 'fuzz_server_stream'
REL = b'\x00'; RUN = b'\x2e'; NEXT = b'\x2a'; END = b'\x2f'
def rel(n): return bytes([n])
def drop(n): return bytes([0x0f + n])
def part(n): return b'\x18' + bytes([n])
def m1(t, body): return b'\x19' + t.encode() + bytes([len(body)]) + body
def raw(b): return b'\x1b' + bytes([len(b)]) + b
def rfq(st): return b'\x1c' + bytes([st])
def err(v, cd, r): return b'\x1d' + bytes([v, cd, r])
def ps(n, v): return b'\x1e' + bytes([n, v])
def cc(t): return b'\x1f' + bytes([t])
for p in range(8):
    write(T, 'honest_%d' % p, bytes([0x80 | p]) + (REL + RUN) * 12)
write(T, 'simple_reordered', b'\x80' + rfq(0) + REL + RUN)
write(T, 'simple_extra_z', b'\x80' + REL + RUN + rfq(0) + RUN)
write(T, 'simple_error_swap', b'\x80' + err(0, 0, 2) + REL + RUN + NEXT + REL + RUN)
write(T, 'fatal_mid', b'\x80' + rel(2) + err(1, 3, 2) + RUN)
write(T, 'split_messages', b'\x81' + part(3) + RUN + part(2) + RUN + REL + RUN + (REL + RUN) * 6)
write(T, 'drop_parse_complete', b'\x81' + drop(1) + REL + RUN + REL + RUN)
write(T, 'stale_plan', b'\x82' + REL + RUN + b'\x2a' + drop(2) + err(0, 1, 0) + rfq(0) + REL + RUN)
write(T, 'copy_in_injected', b'\x83' + drop(1) + b'\x20\x00\x01' + RUN + NEXT + REL + RUN)
write(T, 'copy_ext', b'\x84' + REL + RUN + REL + RUN + cc(7) + rfq(0) + RUN)
write(T, 'param_status', b'\x80' + ps(1, 3) + ps(0, 6) + REL + RUN + ps(2, 4) + RUN)
write(T, 'internal_sync', b'\x85' + REL + RUN + err(0, 4, 2) + REL + RUN + REL + RUN)
write(T, 'internal_rollback', b'\x87' + REL + RUN + REL + RUN + REL + RUN + ps(1, 2) + REL + RUN)
write(T, 'big_row', b'\x80' + drop(4) + b'\x21' + b'\x22\x06' + cc(0) + rfq(0) + RUN)
write(T, 'big_row_backpressure', b'\x80' + drop(4) + b'\x21' + b'\x22\x07' + cc(0) + rfq(0) + RUN)
write(T, 'deallocate_tag', b'\x81' + REL + RUN + cc(4) + REL + RUN)
write(T, 'be_close', b'\x80' + b'\x2c' + RUN)
write(T, 'be_fatal_idle', b'\x80' + REL + RUN + b'\x2d' + RUN + NEXT + REL + RUN)
write(T, 'notices', b'\x80' + b'\x24\x00\x24\x01' + REL + RUN)
write(T, 'login_cleartext', b'\x98' + REL + RUN + REL + RUN + REL + RUN)
write(T, 'login_md5', b'\xa8' + REL + RUN + REL + RUN + REL + RUN)
write(T, 'login_scram', b'\xb8' + REL + RUN + REL + RUN + REL + RUN + REL + RUN)
write(T, 'login_scram_verifier', b'\xf8'[:0] + bytes([0xc0 | 0x08 | 0x30, 0x0a]) + (REL + RUN) * 6)
write(T, 'login_md5user_scram', bytes([0xc0 | 0x08 | 0x30, 0x01]) + (REL + RUN) * 4)
write(T, 'login_error', b'\x88' + err(1, 4, 2) + RUN)
write(T, 'login_weird_auth', b'\x88' + drop(8) + b'\x26\x07' + RUN)
write(T, 'login_param_then_z', b'\x88' + drop(8) + b'\x26\x00' + ps(0, 0) + b'\x25' + rfq(0) + RUN + REL + RUN)
write(T, 'garbage_len', b'\x80' + raw(b'Z\0\0\0\x01') + RUN)
write(T, 'unknown_type', b'\x80' + m1('@', b'xyz') + REL + RUN)
# raw form: a captured server stream (the replies to psql-like traffic)
def R(code, data=b''): return msg('R', struct.pack('>I', code) + data)
def Smsg(n, v): return msg('S', s(n) + s(v))
def Z(st='I'): return msg('Z', st.encode())
ROWDESC = msg('T', struct.pack('>H', 1) + s('?column?') + struct.pack('>IHIHIH', 0, 0, 23, 4, 0xffffffff, 0))
ROW = msg('D', struct.pack('>HI', 1, 1) + b'1')
login_replies = R(0) + Smsg('server_version', '15.0') + msg('K', struct.pack('>II', 1, 2)) + Z()
write(T, 'raw_simple', login_replies + ROWDESC + ROW + msg('C', s('SELECT 1')) + Z() + msg('C', s('BEGIN')) + Z('T') + msg('C', s('COMMIT')) + Z())
write(T, 'raw_extended', msg('1') + msg('2') + ROWDESC + ROW + msg('C', s('SELECT 1')) + Z() + msg('1') + msg('t', struct.pack('>H', 0)) + msg('n') + Z())
write(T, 'raw_copy', msg('G', b'\0' + struct.pack('>HH', 1, 0)) + msg('C', s('COPY 1')) + Z())
write(T, 'raw_error', msg('E', b'SERROR\0C42601\0Msyntax\0\0') + Z() + msg('1') + msg('2') + msg('E', b'SERROR\0C22012\0Mdiv\0\0') + Z())
