"""Integration-test harness: a throwaway PostgreSQL cluster and pgmux processes.

PgServer runs initdb/pg_ctl on a free port in a temp dir (as the `postgres`
system user when we are root, because PostgreSQL refuses to run as root),
creates the roles and databases the tests use and answers superuser queries
over its unix socket.

Pgmux writes a pgmux.ini and a userlist.txt into a per-test directory, starts
the daemon with stderr captured to a log file, waits for its port and stops
it again, reporting crashes and leaked passwords.
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

import pgwire

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PG_BINDIR = Path(os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin"))
PGMUX_BIN = os.path.abspath(os.environ.get("PGMUX_BIN", str(REPO / "pgmux")))
HOST = "127.0.0.1"

# Roles and their passwords. Every one of these (and its md5 form) is
# checked to be absent from every pgmux log.
PASSWORDS = {
    "app": "app-secret",
    "app2": "app2-secret",
    "md5user": "legacy-secret",
}
DB = "appdb"


def md5_secret(user):
    return pgwire.md5_password_hash(PASSWORDS[user], user)


def secrets_that_must_not_leak():
    out = list(PASSWORDS.values())
    out += [md5_secret(u) for u in PASSWORDS]
    return out


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_accepts(port, timeout=0.2):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(text, lines=60):
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------
# PostgreSQL


class PgServer:
    SUPERUSER = "postgres"

    def __init__(self, conf=(), hba=None, files=None):
        """CONF: extra postgresql.conf lines; HBA: pg_hba.conf lines instead
        of the default ones; FILES: name -> path of files copied into the
        data directory (certificates: owned by postgres, mode 0600)."""
        self.extra_conf = list(conf)
        self.hba = hba
        self.files = dict(files or {})
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="pgmux-it-pg-"))
        self.data = self.base / "data"
        self.sockdir = self.base / "sock"
        self.logfile = self.base / "postgres.log"
        self.port = free_port()
        self.host = HOST
        self.started = False

    # -- process control ---------------------------------------------------

    def _cmd(self, args):
        args = [str(a) for a in args]
        if self.as_root:
            return ["runuser", "-u", "postgres", "--"] + args
        return args

    def _run(self, args, timeout=120, **kw):
        r = subprocess.run(self._cmd(args), capture_output=True, text=True,
                           timeout=timeout, **kw)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d):\n%s\n%s"
                               % (" ".join(map(str, args)), r.returncode, r.stdout, r.stderr))
        return r

    def _ensure_postgres_user(self):
        r = subprocess.run(["id", "-u", "postgres"], capture_output=True)
        if r.returncode != 0:
            subprocess.run(["useradd", "--system", "postgres"], check=True)

    def start(self):
        if self.as_root:
            self._ensure_postgres_user()
        self.sockdir.mkdir()
        if self.as_root:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sockdir, "postgres")
        self._run([PG_BINDIR / "initdb", "-D", self.data, "-U", self.SUPERUSER,
                   "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n# pgmux integration harness\n")
            f.write("listen_addresses = '127.0.0.1'\n")
            f.write("port = %d\n" % self.port)
            f.write("unix_socket_directories = '%s'\n" % self.sockdir)
            f.write("max_connections = 200\n")
            f.write("fsync = off\n")
            f.write("synchronous_commit = off\n")
            f.write("full_page_writes = off\n")
            f.write("password_encryption = 'scram-sha-256'\n")
            f.write("log_min_messages = warning\n")
            for line in self.extra_conf:
                f.write(line + "\n")
        # md5user's password is stored as MD5, which a scram-sha-256 line
        # would refuse, so it gets its own md5 line first.
        hba = self.hba if self.hba is not None else [
            "host all md5user 127.0.0.1/32 md5",
            "host all all 127.0.0.1/32 scram-sha-256"]
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n" + "".join(l + "\n" for l in hba))
        for name, src in self.files.items():
            shutil.copy(src, self.data / name)
            os.chmod(self.data / name, 0o600)
        for name in ["pg_hba.conf"] + list(self.files):
            if self.as_root:
                shutil.chown(self.data / name, "postgres")
        try:
            self._run([PG_BINDIR / "pg_ctl", "start", "-w", "-t", "60", "-D", self.data,
                       "-l", self.logfile], timeout=90)
        except Exception as e:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            raise RuntimeError("PostgreSQL did not start: %s\n%s" % (e, tail(log))) from e
        self.started = True

    def stop(self):
        if self.started:
            try:
                self._run([PG_BINDIR / "pg_ctl", "stop", "-m", "immediate", "-D", self.data],
                          timeout=60)
            except Exception:
                pass
            self.started = False
        shutil.rmtree(self.base, ignore_errors=True)

    # -- superuser access ----------------------------------------------------

    def connect(self, dbname="postgres", user=SUPERUSER, autocommit=True):
        return psycopg.connect(host=str(self.sockdir), port=self.port, user=user,
                               dbname=dbname, autocommit=autocommit, connect_timeout=10)

    def sql(self, q, params=None, dbname="postgres"):
        with self.connect(dbname=dbname) as c:
            cur = c.execute(q, params)
            return cur.fetchall() if cur.description else None

    def setup_roles(self, pgbench=True):
        """Roles app/app2/md5user and database appdb; PGBENCH=False skips
        the pgbench tables (a private cluster a test starts for itself)."""
        with self.connect() as c:
            c.execute("SET password_encryption = 'scram-sha-256'")
            c.execute("CREATE ROLE app LOGIN PASSWORD 'app-secret'")
            c.execute("CREATE ROLE app2 LOGIN PASSWORD 'app2-secret'")
            c.execute("SET password_encryption = 'md5'")
            c.execute("CREATE ROLE md5user LOGIN PASSWORD 'legacy-secret'")
            c.execute("CREATE DATABASE appdb OWNER app")
        with self.connect(dbname=DB) as c:
            c.execute("GRANT ALL ON SCHEMA public TO app2, md5user")
            c.execute("ALTER DEFAULT PRIVILEGES FOR ROLE app "
                      "GRANT ALL ON TABLES TO app2, md5user")
        # pgbench tables, owned by app, initialised once per session.
        if not pgbench:
            return
        r = subprocess.run([str(PG_BINDIR / "pgbench"), "-i", "-s", "1", "-q",
                            "-h", str(self.sockdir), "-p", str(self.port), "-U", "app", DB],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("pgbench -i failed:\n%s\n%s" % (r.stdout, r.stderr))

    def rolpassword(self, role):
        return self.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))[0][0]

    def backends(self, user="app", dbname=DB):
        """(pid, state, backend_xid) of client backends of USER on DBNAME."""
        return self.sql(
            "SELECT pid, state, backend_xid::text FROM pg_stat_activity "
            "WHERE usename = %s AND datname = %s AND backend_type = 'client backend'",
            (user, dbname))

    def count_backends(self, user="app", dbname=DB):
        return len(self.backends(user, dbname))

    def wait_backends(self, pred, user="app", dbname=DB, timeout=10.0):
        """Wait until PRED(count) holds; returns the last count."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.count_backends(user, dbname)
            if pred(n) or time.monotonic() > deadline:
                return n
            time.sleep(0.05)

    def terminate(self, pid, wait=True, timeout=10.0):
        self.sql("SELECT pg_terminate_backend(%s)", (pid,))
        if wait:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not self.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
                    return
                time.sleep(0.02)
            raise AssertionError("backend %d did not go away" % pid)

    # -- faults: restart, freeze ---------------------------------------------

    def restart(self, mode="fast", timeout=60):
        """pg_ctl restart -m MODE; returns once the server accepts again."""
        self._run([PG_BINDIR / "pg_ctl", "restart", "-w", "-t", str(timeout), "-m", mode,
                   "-D", self.data, "-l", self.logfile], timeout=timeout + 30)

    def postmaster_pid(self):
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def process_pids(self):
        """The postmaster and every process it forked (backends, checkpointer,
        ...), postmaster first."""
        pm = self.postmaster_pid()
        out = [pm]
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pm:
                out.append(int(d.name))
        return out

    def freeze(self):
        """SIGSTOP the postmaster (first, so it forks nothing new) and all its
        children. Returns the pids to pass to thaw()."""
        pids = self.process_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        return pids

    def thaw(self, pids):
        for pid in reversed(pids):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


class ActivitySampler:
    """Samples the number of USER's client backends on DB every INTERVAL
    seconds in a background thread; .max and .samples afterwards."""

    def __init__(self, pg, user="app", dbname=DB, interval=0.1):
        self.pg, self.user, self.dbname, self.interval = pg, user, dbname, interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error = None

    def _run(self):
        try:
            with self.pg.connect() as c:
                while not self._stop.is_set():
                    n = c.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE usename = %s "
                        "AND datname = %s AND backend_type = 'client backend'",
                        (self.user, self.dbname)).fetchone()[0]
                    self.samples.append(n)
                    self._stop.wait(self.interval)
        except Exception as e:  # reported by stop()
            self.error = e

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)

    @property
    def max(self):
        return max(self.samples) if self.samples else 0


# --------------------------------------------------------------------------
# pgmux


# The first line of a sanitizer report (ASan, UBSan, LSan, TSan).
SANITIZER_REPORT = re.compile(
    r"^(==\d+==ERROR: (AddressSanitizer|LeakSanitizer)|WARNING: ThreadSanitizer|"
    r"\S+:\d+:\d+: runtime error:|SUMMARY: (Address|Undefined|Leak|Thread)Sanitizer)", re.M)
FRAME = re.compile(r"^\s*#(\d+) 0x[0-9a-f]+ in (\S+) (\S+)", re.M)


def sanitizer_reports(log, frames=4):
    """Each sanitizer report in LOG as one line: its headline and the first
    FRAMES stack frames (function and file:line)."""
    out = []
    starts = [m.start() for m in SANITIZER_REPORT.finditer(log)
              if not m.group(0).startswith("SUMMARY")]
    if not starts:
        m = SANITIZER_REPORT.search(log)
        starts = [m.start()] if m else []
    for i, st in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(log)
        chunk = log[st:end]
        head = chunk.splitlines()[0].strip()
        fr = ["%s %s" % (f.group(2), f.group(3).rsplit("/", 1)[-1])
              for f in FRAME.finditer(chunk)][:frames]
        out.append(head + (" | at " + " <- ".join(fr) if fr else ""))
    return out


class PgClients:
    """psycopg helpers for anything with .port and .passwords (a pgmux, or
    PostgreSQL itself)."""

    def dsn(self, user="app", dbname=DB, password=None, **kw):
        if password is None:
            password = self.passwords.get(user, "")
        parts = {"host": HOST, "port": self.port, "user": user, "dbname": dbname,
                 "password": password, "connect_timeout": 10}
        parts.update(kw)
        return " ".join("%s=%s" % (k, _conninfo_quote(v)) for k, v in parts.items()
                        if v is not None)

    def connect(self, user="app", dbname=DB, password=None, autocommit=True,
                prepare_threshold=5, **kw):
        """A psycopg connection, with psycopg's default prepare_threshold (a
        query run 5 times becomes a named prepared statement), which
        transaction pooling supports."""
        return psycopg.connect(self.dsn(user=user, dbname=dbname, password=password, **kw),
                               autocommit=autocommit, prepare_threshold=prepare_threshold)


class Pgmux(PgClients):
    """One pgmux process with its own config dir."""

    def __init__(self, pg, workdir, pool_size=5, pool_mode="transaction",
                 auth_type="scram-sha-256", userlist=None, databases=None,
                 extra_userlist="", **settings):
        self.pg = pg
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config_path = self.dir / "pgmux.ini"
        self.userlist_path = self.dir / "userlist.txt"
        self.log_path = self.dir / "pgmux.log"
        self.proc = None
        self.signals_sent = set()
        self.passwords = dict(PASSWORDS)

        cfg = {
            "listen_addr": HOST,
            "listen_port": self.port,
            "workers": 2,
            "pool_mode": pool_mode,
            "auth_type": auth_type,
            "auth_file": "userlist.txt",
            "max_client_conn": 10000,
            "default_pool_size": 20,
            "min_pool_size": 0,
            "connection_borrow_timeout": 120,
            "idle_client_timeout": 1800,
            "server_idle_timeout": 600,
            "server_lifetime": 3600,
            "server_connect_timeout": 5,
            "client_login_timeout": 15,
            # the harness stops pgmux with SIGTERM (so that LeakSanitizer runs
            # at exit): a transaction a test leaves open delays that by this
            "shutdown_timeout": 3,
            "log_level": "debug",
        }
        cfg.update(settings)
        if databases is None:
            databases = {DB: {"host": HOST, "port": pg.port, "dbname": DB,
                              "pool_size": pool_size}}
        lines = ["[pgmux]"]
        # a setting given as None is left out (the built-in default applies)
        lines += ["%s = %s" % (k, v) for k, v in cfg.items() if v is not None]
        for name, opts in databases.items():
            lines += ["", "[database.%s]" % name]
            lines += ["%s = %s" % (k, v) for k, v in opts.items()]
        self.config_text = "\n".join(lines) + "\n"
        self.config_path.write_text(self.config_text)

        # userlist: user -> secret as written (plain, md5..., SCRAM-SHA-256$...)
        if userlist is None:
            userlist = dict(PASSWORDS)
        self.userlist = userlist
        text = "".join('"%s" "%s"\n' % (u, s) for u, s in userlist.items()) + extra_userlist
        self.userlist_path.write_text(text)

    # -- lifecycle -----------------------------------------------------------

    def start(self, timeout=10.0):
        if not os.access(PGMUX_BIN, os.X_OK):
            raise AssertionError("pgmux binary %s not found or not executable: build it "
                                 "or set PGMUX_BIN" % PGMUX_BIN)
        self._logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen([PGMUX_BIN, str(self.config_path)], cwd=str(self.dir),
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("pgmux exited with %d before listening; config:\n%s\nlog:\n%s"
                                     % (self.proc.returncode, self.config_text,
                                        tail(self.log_text())))
            if port_accepts(self.port):
                return self
            time.sleep(0.05)
        raise AssertionError("pgmux did not accept TCP on port %d within %.0fs; log:\n%s"
                             % (self.port, timeout, tail(self.log_text())))

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        self.signals_sent.add(sig)
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Wait for the process to exit; returns the return code or None."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        """SIGTERM (pgmux drains and exits normally, so a sanitizer build
        runs its leak check), then SIGKILL if it is still running 15 s
        later. Returns a list of problems: a crash, a hang, a sanitizer
        report (named by its first frames), a secret in the log."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            if self.wait_exit(15) is None:
                problems.append("pgmux did not exit within 15 s of SIGTERM; sent SIGKILL")
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        self._logf.close()
        rc = self.proc.returncode
        if rc < 0 and -rc not in self.signals_sent:
            problems.append("pgmux died from signal %d (%s)"
                            % (-rc, signal.Signals(-rc).name))
        log = self.log_text()
        for rep in sanitizer_reports(log):
            problems.append("sanitizer report: " + rep)
        if rc > 0 and not problems:
            problems.append("pgmux exited with status %d" % rc)
        for secret in secrets_that_must_not_leak() + self._extra_secrets():
            if secret in log:
                problems.append("a password/secret (%s...) appears in the pgmux log"
                                % secret[:4])
        if problems:
            problems.append("pgmux log tail:\n" + tail(log))
        return problems

    def _extra_secrets(self):
        out = []
        for s in self.userlist.values():
            if s.startswith("SCRAM-SHA-256$"):
                # StoredKey and ServerKey (the salt is public)
                out += [p for p in re.split(r"[$:]", s)[3:] if len(p) > 20]
        return out

    # -- logs ------------------------------------------------------------------

    def log_text(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        """An offset to pass as since= to wait_for_log / log_since."""
        return len(self.log_text())

    def log_since(self, mark):
        return self.log_text()[mark:]

    def wait_for_log(self, pattern, timeout=5.0, since=0):
        """Wait until PATTERN (regex) matches a log line written after SINCE;
        returns the match or raises AssertionError with the log tail."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(since)
            for line in text.splitlines():
                m = rx.search(line)
                if m:
                    return m
            if time.monotonic() > deadline:
                raise AssertionError("no pgmux log line matching %r within %.1fs; log tail:\n%s"
                                     % (pattern, timeout, tail(text)))
            time.sleep(0.05)

    def log_lines(self, pattern, since=0):
        rx = re.compile(pattern)
        return [l for l in self.log_since(since).splitlines() if rx.search(l)]

    # -- clients ---------------------------------------------------------------


    def wire(self, timeout=5.0):
        return pgwire.PgWire(HOST, self.port, timeout=timeout)

    def wire_login(self, user="app", dbname=DB, password=None, params=None,
                   timeout=5.0, **kw):
        if password is None:
            password = self.passwords.get(user)
        return pgwire.connect(HOST, self.port, user, dbname, password=password,
                              params=params, timeout=timeout, **kw)

    def assert_serves(self, user="app"):
        """A fresh client can log in and run a query (after bad input)."""
        assert self.proc.poll() is None, \
            "pgmux exited (rc=%s); log:\n%s" % (self.proc.returncode, tail(self.log_text()))
        with self.connect(user=user) as c:
            assert c.execute("SELECT 41 + 1").fetchone()[0] == 42

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def rss_kib(self):
        """Resident set size (VmRSS) of the pgmux process, in KiB."""
        return proc_status_kib(self.pid, "VmRSS")


def proc_status_kib(pid, field):
    """A '... kB' field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB."""
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def raise_nofile(n):
    """Raise this process's soft RLIMIT_NOFILE to N (at most the hard limit;
    pgmux processes started afterwards inherit it). Returns the new limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft


_sanitizer = None


def pgmux_sanitizer():
    """'address', 'thread' or None: which sanitizer PGMUX_BIN was built with
    (RSS figures mean little under one: freed memory sits in quarantine)."""
    global _sanitizer
    if _sanitizer is None:
        try:
            data = Path(PGMUX_BIN).read_bytes()
        except OSError:
            data = b""
        _sanitizer = ("address" if b"__asan_init" in data else
                      "thread" if b"__tsan_init" in data else "")
    return _sanitizer or None


def record_figures(test, directory=None, **figures):
    """Report what a test measured (for the lead's closing note): one JSON
    line printed as 'FIGURES {...}' (pytest -rP shows it), written to
    DIRECTORY/figures.json and appended to $PGMUX_FIGURES if that is set."""
    import json
    line = json.dumps(dict(figures, test=test), sort_keys=True, default=str)
    print("FIGURES " + line, flush=True)
    if directory is not None:
        with open(Path(directory) / "figures.json", "a") as f:
            f.write(line + "\n")
    path = os.environ.get("PGMUX_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")
    return line


def _conninfo_quote(v):
    v = str(v)
    if v == "" or re.search(r"[\s'\\]", v):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return v


def run_psql(mux, sql, user="app", dbname=DB, password=None, timeout=30, extra_env=None):
    env = dict(os.environ)
    env["PGPASSWORD"] = password if password is not None else PASSWORDS.get(user, "")
    env.pop("PGSERVICE", None)
    if extra_env:
        env.update(extra_env)
    return subprocess.run(
        [str(PG_BINDIR / "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
         "-h", HOST, "-p", str(mux.port), "-U", user, "-d", dbname, "-c", sql],
        capture_output=True, text=True, timeout=timeout, env=env)


def run_check(inst, timeout=10):
    """pgmux --check on INST's config (a Pgmux that was not started)."""
    return subprocess.run([PGMUX_BIN, "--check", str(inst.config_path)], capture_output=True,
                          text=True, timeout=timeout)
