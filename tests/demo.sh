#!/usr/bin/env bash
# pgmux demo: installs what is missing, builds pgmux, starts a throw-away
# PostgreSQL of its own (initdb into .state/demo, never the system cluster)
# on a free port of 127.0.0.1, puts pgmux in front of it, runs a short pgbench
# through pgmux and prints how to connect with psql. Then it stays up until
# Ctrl-C, and stops and removes everything it started.
#
# Unattended: when stdin is not a terminal it exits right after the pgbench;
# DEMO_SECONDS=N stays up N seconds instead (in both cases).
#
# Environment: DEMO_SECONDS, DEMO_STATE_DIR (default <repo>/.state/demo),
# PGMUX_BIN (a pgmux binary to use instead of building one),
# DEMO_PGBENCH_SECONDS (default 5), DEMO_PGBENCH_CLIENTS (default 10).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PGENV_TAG=demo
# shellcheck source=tests/lib/pgenv.sh
. "$ROOT/tests/lib/pgenv.sh"

log() { printf 'demo: %s\n' "$*"; }
die() {
	printf 'demo: error: %s\n' "$*" >&2
	exit 1
}

PGBENCH_SECONDS=${DEMO_PGBENCH_SECONDS:-5}
PGBENCH_CLIENTS=${DEMO_PGBENCH_CLIENTS:-10}
if [ -n "${DEMO_SECONDS:-}" ]; then
	case "$DEMO_SECONDS" in *[!0-9]* | '') die "DEMO_SECONDS must be a whole number of seconds" ;; esac
	STAY_SECONDS=$DEMO_SECONDS
elif [ -t 0 ]; then
	STAY_SECONDS=forever
else
	STAY_SECONDS=0
fi

# --- 1. dependencies and build -------------------------------------------
log "checking dependencies (tests/install-deps.sh)"
bash "$ROOT/tests/install-deps.sh" >"${TMPDIR:-/tmp}/pgmux-demo-install.log" 2>&1 || {
	cat "${TMPDIR:-/tmp}/pgmux-demo-install.log" >&2
	die "tests/install-deps.sh failed"
}
rm -f "${TMPDIR:-/tmp}/pgmux-demo-install.log"

if [ -n "${PGMUX_BIN:-}" ]; then
	[ -x "$PGMUX_BIN" ] || die "PGMUX_BIN=$PGMUX_BIN is not an executable"
else
	log "building pgmux"
	mkdir -p m4
	# out of tree, in build/plain, as tests/run-all.sh builds it (an in-tree
	# ./configure would make the out-of-tree builds refuse to run)
	mkdir -p "$ROOT/m4"
	[ -x configure ] || autoreconf -fi >/dev/null 2>&1 || die "autoreconf -fi failed"
	if [ -f Makefile ]; then
		make distclean >/dev/null 2>&1 || true
	fi
	mkdir -p "$ROOT/build/plain"
	[ -f "$ROOT/build/plain/Makefile" ] || (cd "$ROOT/build/plain" && ../../configure >/dev/null) ||
		die "./configure failed"
	make -C "$ROOT/build/plain" -j2 pgmux >/dev/null || die "make failed"
	PGMUX_BIN=$ROOT/build/plain/pgmux
fi
pgenv_find_bindir

# --- 2. state directory, cleanup ------------------------------------------
STATE_WANTED=${DEMO_STATE_DIR:-$ROOT/.state/demo}
STATE=""
SOCK=""
PGMUX_PID=""

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$PGMUX_PID" ]; then
		log "stopping pgmux"
		pgenv_stop_pid "$PGMUX_PID" 10
	fi
	if [ -n "$STATE" ] && [ -d "$STATE/pgdata" ]; then
		log "stopping PostgreSQL"
		pgenv_stop_cluster "$STATE/pgdata"
	fi
	if [ -n "$SOCK" ] && [ "${SOCK#"$STATE"/}" = "$SOCK" ]; then
		rm -rf "$SOCK"
	fi
	if [ -n "$STATE" ]; then
		rm -rf "$STATE"
		log "removed $STATE"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pgenv_stop_stale "$STATE_WANTED"
STATE=$(pgenv_make_state_dir "$STATE_WANTED" demo)
SOCK=$(pgenv_socket_dir "$STATE" demo)

# --- 3. PostgreSQL --------------------------------------------------------
PG_PORT=$(pgenv_free_port)
PGMUX_PORT=$(pgenv_free_port)
log "starting PostgreSQL on 127.0.0.1:$PG_PORT (data in $STATE/pgdata)"
pgenv_init_cluster "$STATE/pgdata" "$SOCK" "$PG_PORT" "max_connections = 100" "shared_buffers = 128MB"
pgenv_start_cluster "$STATE/pgdata" "$STATE/postgres.log"

PASSWORD=$(pgenv_gen_password)
(
	umask 077
	printf '%s\n' "$PASSWORD" >"$STATE/password"
)
pgenv_create_app_db "$SOCK" "$PG_PORT" app "$PASSWORD" appdb ||
	die "could not create role app and database appdb"
log "created role app (password in $STATE/password) and database appdb"

log "pgbench -i (scale 1) into appdb"
PGPASSWORD=$PASSWORD "$PGBIN/pgbench" -i -q -s 1 -h 127.0.0.1 -p "$PG_PORT" -U app appdb \
	>"$STATE/pgbench-init.log" 2>&1 || {
	cat "$STATE/pgbench-init.log" >&2
	die "pgbench -i failed"
}

# --- 4. pgmux -------------------------------------------------------------
(
	umask 077
	printf '"app" "%s"\n' "$PASSWORD" >"$STATE/userlist.txt"
)
cat >"$STATE/pgmux.ini" <<EOF
; pgmux demo configuration, written by tests/demo.sh
[pgmux]
listen_addr = 127.0.0.1
listen_port = $PGMUX_PORT
workers = 1
pool_mode = transaction
auth_type = scram-sha-256
auth_file = $STATE/userlist.txt
default_pool_size = 10
log_level = info

[database.appdb]
host = 127.0.0.1
port = $PG_PORT
dbname = appdb
EOF
if [ "$(id -u)" -eq 0 ]; then
	chown "$PGENV_RUN_USER:" "$STATE/userlist.txt" "$STATE/pgmux.ini"
fi

PGMUX_RUN=$(pgenv_runnable_bin "$PGMUX_BIN" "$STATE")
pgenv_as_user "$PGMUX_RUN" --check "$STATE/pgmux.ini" >"$STATE/pgmux-check.log" 2>&1 || {
	cat "$STATE/pgmux-check.log" >&2
	die "pgmux --check rejected the demo configuration"
}
log "starting pgmux on 127.0.0.1:$PGMUX_PORT (log in $STATE/pgmux.log)"
pgenv_spawn "$STATE/pgmux.log" "$PGMUX_RUN" "$STATE/pgmux.ini"
PGMUX_PID=$PGENV_PID
echo "$PGMUX_PID" >"$STATE/pgmux.pid"
pgenv_wait_port "$PGMUX_PORT" "$PGMUX_PID" 15 || {
	tail -n 30 "$STATE/pgmux.log" >&2 || true
	die "pgmux did not start listening on 127.0.0.1:$PGMUX_PORT"
}

# --- 5. a short pgbench through pgmux ---------------------------------------
log "pgbench -S -c $PGBENCH_CLIENTS -T $PGBENCH_SECONDS through pgmux"
if ! PGPASSWORD=$PASSWORD timeout $((PGBENCH_SECONDS + 60)) "$PGBIN/pgbench" -n -S \
	-c "$PGBENCH_CLIENTS" -j 2 -T "$PGBENCH_SECONDS" -h 127.0.0.1 -p "$PGMUX_PORT" -U app appdb \
	>"$STATE/pgbench.log" 2>&1; then
	cat "$STATE/pgbench.log" >&2
	tail -n 30 "$STATE/pgmux.log" >&2 || true
	die "pgbench through pgmux failed"
fi
sed 's/^/  /' "$STATE/pgbench.log"

cat <<EOF

pgmux is listening on 127.0.0.1:$PGMUX_PORT in front of PostgreSQL on 127.0.0.1:$PG_PORT.
Connect through pgmux with (the password is in a file; it is never printed):

  PGPASSWORD=\$(cat $STATE/password) psql -h 127.0.0.1 -p $PGMUX_PORT -U app appdb

Config: $STATE/pgmux.ini   Log: $STATE/pgmux.log
EOF

# --- 6. stay up -----------------------------------------------------------
trap 'echo; exit 0' INT TERM
if [ "$STAY_SECONDS" = forever ]; then
	echo "Press Ctrl-C to stop pgmux and PostgreSQL and remove $STATE."
	# wait returns when pgmux exits or a trapped signal arrives.
	wait "$PGMUX_PID" || true
	PGMUX_PID=""
	tail -n 30 "$STATE/pgmux.log" >&2 || true
	die "pgmux exited on its own"
fi
if [ "$STAY_SECONDS" -gt 0 ]; then
	log "staying up ${STAY_SECONDS}s"
	end=$((SECONDS + STAY_SECONDS))
	while [ $SECONDS -lt $end ]; do
		kill -0 "$PGMUX_PID" 2>/dev/null || {
			tail -n 30 "$STATE/pgmux.log" >&2 || true
			PGMUX_PID=""
			die "pgmux exited on its own"
		}
		sleep 1
	done
fi
log "done"
