#!/usr/bin/python3
"""Harness self-validation only: run PgBouncer in place of pgmux.

    PGMUX_BIN=tests/integration/pgbouncer_shim.py /usr/bin/python3 -m pytest tests/integration

translates the pgmux.ini the harness writes into a pgbouncer.ini and execs
the Debian pgbouncer binary (as the postgres user when we are root, since
PgBouncer refuses to run as root). It lets the suite's protocol and pooling
checks be exercised against a known pooler before pgmux exists. Expect
differences where pgmux's contract differs from PgBouncer's (log format,
SQLSTATEs of some errors, SIGTERM/SIGINT roles, NegotiateProtocolVersion
in 1.18, workers). It is not part of pgmux's test verdict.
"""

import configparser
import os
import pwd
import shutil
import sys
import tempfile

PGBOUNCER = os.environ.get("PGBOUNCER_BIN", "/usr/sbin/pgbouncer")


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--version":
        os.execv(PGBOUNCER, [PGBOUNCER, "--version"])
    src = sys.argv[1]
    cp = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    cp.read(src)
    m = cp["pgmux"]
    srcdir = os.path.dirname(os.path.abspath(src))
    work = tempfile.mkdtemp(prefix="pgbouncer-shim-")
    shutil.copy(os.path.join(srcdir, m.get("auth_file", "userlist.txt")),
                os.path.join(work, "userlist.txt"))
    out = ["[databases]"]
    for sec in cp.sections():
        if sec.startswith("database."):
            d = cp[sec]
            name = sec[len("database."):]
            parts = ["host=%s" % d.get("host", "127.0.0.1"), "port=%s" % d.get("port", "5432"),
                     "dbname=%s" % d.get("dbname", name)]
            if "pool_size" in d:
                parts.append("pool_size=%s" % d["pool_size"])
            out.append("%s = %s" % (name, " ".join(parts)))
    mapping = {
        "listen_addr": "listen_addr", "listen_port": "listen_port",
        "pool_mode": "pool_mode", "auth_type": "auth_type",
        "max_client_conn": "max_client_conn", "default_pool_size": "default_pool_size",
        "min_pool_size": "min_pool_size",
        "connection_borrow_timeout": "query_wait_timeout",
        "idle_client_timeout": "client_idle_timeout",
        "server_idle_timeout": "server_idle_timeout", "server_lifetime": "server_lifetime",
        "server_connect_timeout": "server_connect_timeout",
        "client_login_timeout": "client_login_timeout",
    }
    out.append("[pgbouncer]")
    for k, v in m.items():
        if k in mapping:
            out.append("%s = %s" % (mapping[k], v))
    out += ["auth_file = %s/userlist.txt" % work, "unix_socket_dir =", "logfile =",
            "pidfile =", "verbose = 0", "ignore_startup_parameters = extra_float_digits",
            "server_reset_query = DISCARD ALL", "so_reuseport = 0"]
    with open(os.path.join(work, "pgbouncer.ini"), "w") as f:
        f.write("\n".join(out) + "\n")
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in os.listdir(work):
            os.chown(os.path.join(work, p), pw.pw_uid, pw.pw_gid)
        os.chown(work, pw.pw_uid, pw.pw_gid)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    os.execv(PGBOUNCER, [PGBOUNCER, os.path.join(work, "pgbouncer.ini")])


if __name__ == "__main__":
    main()
