#!/usr/bin/env bash
# Record real client sessions and turn them into fuzz seeds (run by hand,
# rarely; CI never runs it; see tests/fuzz/README.md).
#
#   bash tests/fuzz/capture/capture.sh [FUZZ_BUILD_DIR]
#
# Starts a throw-away PostgreSQL of its own (tests/lib/pgenv.sh: initdb in a
# temporary directory, scram-sha-256 on 127.0.0.1, ssl off), the recording
# proxy proxy.py in front of it, and runs through the proxy, each logging in
# with SCRAM-SHA-256:
#   psql       session.sql: simple queries, \copy in and out, errors
#   pgbench    -M simple, -M extended, -M prepared (tables made directly)
#   psycopg    session_psycopg.py: prepare_threshold=0, pipeline, COPY, cancel
#   asyncpg    session_asyncpg.py
#   pgjdbc     Session.java (Debian's libpostgresql-jdbc-java, installed with
#              apt-get here if missing; java 17)
# Then make_seeds.py writes the seeds into tests/fuzz/corpus/<harness>/
# (replacing the captured ones, keeping hand-written ones). With
# FUZZ_BUILD_DIR (CC=clang --enable-fuzzing, after make fuzz) each corpus of
# a harness built there is minimised with libFuzzer's -merge=1.
#
# Environment: CAPTURE_KEEP=DIR keeps the recordings (*.rec) in DIR;
# CAPTURE_SKIP="pgjdbc asyncpg ..." leaves sessions out.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
PGENV_TAG=capture
# shellcheck source=tests/lib/pgenv.sh
. "$ROOT/tests/lib/pgenv.sh"
BUILD=${1:-}

log() { printf 'capture: %s\n' "$*"; }
skip() { case " ${CAPTURE_SKIP:-} " in *" $1 "*) return 0 ;; esac; return 1; }
kernel_port() {
	/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

STATE=$(mktemp -d /tmp/pgmux-capture.XXXXXX)
chmod 700 "$STATE"
[ "$(id -u)" -eq 0 ] && chown "$PGENV_RUN_USER:" "$STATE"
SOCK=$(pgenv_socket_dir "$STATE" capture)
REC=${CAPTURE_KEEP:-$STATE/rec}
mkdir -p "$REC"
PROXY_PID=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[ -n "$PROXY_PID" ] && pgenv_stop_pid "$PROXY_PID" 10
	[ -d "$STATE/pgdata" ] && pgenv_stop_cluster "$STATE/pgdata"
	case "$SOCK" in "$STATE"/*) ;; *) rm -rf "$SOCK" ;; esac
	rm -rf "$STATE"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PG_PORT=$(kernel_port)
log "PostgreSQL on 127.0.0.1:$PG_PORT"
pgenv_init_cluster "$STATE/pgdata" "$SOCK" "$PG_PORT" "ssl = off" "max_connections = 50"
pgenv_start_cluster "$STATE/pgdata" "$STATE/postgres.log"
PASSWORD=$(pgenv_gen_password)
pgenv_create_app_db "$SOCK" "$PG_PORT" app "$PASSWORD" appdb
export PGPASSWORD=$PASSWORD # for psql and pgbench; never printed

log "pgbench -i (directly, not recorded)"
"$PGBIN/pgbench" -i -q -s 1 -h 127.0.0.1 -p "$PG_PORT" -U app appdb >"$STATE/pgbench-init.log" 2>&1

LABEL=$STATE/label
/usr/bin/python3 "$HERE/proxy.py" --listen-port-file "$STATE/proxy.port" \
	--upstream "127.0.0.1:$PG_PORT" --out "$REC" --label-file "$LABEL" \
	</dev/null >"$STATE/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 100); do
	[ -s "$STATE/proxy.port" ] && break
	sleep 0.1
done
PROXY_PORT=$(cat "$STATE/proxy.port")
log "recording proxy on 127.0.0.1:$PROXY_PORT, recordings in $REC"

session() {
	local name=$1
	shift
	if skip "$name"; then
		log "skipping $name"
		return 0
	fi
	echo "$name" >"$LABEL"
	log "session $name"
	local rc=0
	"$@" >"$STATE/$name.log" 2>&1 || rc=$?
	if [ $rc -ne 0 ] && [ -z "${MAY_FAIL:-}" ]; then
		tail -n 20 "$STATE/$name.log" >&2
		log "session $name failed (exit $rc)"
		return 1
	fi
}

session psql "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PROXY_PORT" -U app -d appdb -f "$HERE/session.sql"
# sslmode=prefer: an SSLRequest, the 'N' (ssl = off), then the startup packet
session psql-sslprefer "$PGBIN/psql" -X -q -c 'SELECT 1' \
	"host=127.0.0.1 port=$PROXY_PORT user=app dbname=appdb sslmode=prefer application_name=capture options='-c work_mem=8MB'"
# a wrong password: the login ends in an ErrorResponse
MAY_FAIL=1 session psql-badpass env PGPASSWORD=wrong "$PGBIN/psql" -X -q -c 'SELECT 1' \
	"host=127.0.0.1 port=$PROXY_PORT user=app dbname=appdb"
for mode in simple extended prepared; do
	session "pgbench-$mode" "$PGBIN/pgbench" -n -M "$mode" -t 8 -c 2 -j 1 \
		-h 127.0.0.1 -p "$PROXY_PORT" -U app appdb
done

export PGMUX_CAPTURE_DSN="host=127.0.0.1 port=$PROXY_PORT user=app password=$PASSWORD dbname=appdb sslmode=disable"
export PGMUX_CAPTURE_HOST=127.0.0.1 PGMUX_CAPTURE_PORT=$PROXY_PORT PGMUX_CAPTURE_USER=app
export PGMUX_CAPTURE_PASSWORD=$PASSWORD PGMUX_CAPTURE_DB=appdb
session psycopg /usr/bin/python3 "$HERE/session_psycopg.py"
session asyncpg /usr/bin/python3 "$HERE/session_asyncpg.py"

if ! skip pgjdbc; then
	JAR=/usr/share/java/postgresql.jar
	if [ ! -f "$JAR" ]; then
		log "installing libpostgresql-jdbc-java (apt-get)"
		apt-get update -qq >/dev/null && apt-get install -y -qq libpostgresql-jdbc-java >/dev/null
	fi
	mkdir -p "$STATE/java"
	javac -cp "$JAR" -d "$STATE/java" "$HERE/Session.java"
	session pgjdbc java -cp "$STATE/java:$JAR" Session 127.0.0.1 "$PROXY_PORT" app appdb
fi

pgenv_stop_pid "$PROXY_PID" 10
PROXY_PID=""
log "$(find "$REC" -name '*.rec' | wc -l) connections recorded"
/usr/bin/python3 "$HERE/make_seeds.py" "$REC" "$ROOT/tests/fuzz/corpus" ${BUILD:+--merge "$BUILD"}
