#!/usr/bin/env bash
# Side-by-side benchmark: pgmux, pgbouncer and a direct connection to the
# same PostgreSQL, driven by pgbench on 127.0.0.1 only.
#
# In one run it starts its own PostgreSQL (initdb into .state/bench, never the
# system cluster; max_connections=1100 so "direct" can take 1000 clients,
# fsync=off), loads pgbench data (scale BENCH_SCALE, default 1: 100,000 rows
# in pgbench_accounts, about 15 MB, all in shared_buffers, so the figures
# measure the connection path, not the disk), starts pgmux (transaction mode,
# one instance per entry of BENCH_WORKERS) and pgbouncer (the Debian package's
# /usr/sbin/pgbouncer, transaction mode, same pool size), and runs
# `pgbench -n -S -j 2` at each client count for each protocol mode against
# each target. It prints a markdown table (TPS, average latency, the
# pooler's CPU per transaction, pgmux/pgbouncer and pgmux/direct) and saves it
# to tests/bench/results/<UTC timestamp>.md. Everything it started is
# stopped and its state directory removed when it ends, however it ends.
#
# Build pgmux first (tests/run-all.sh, or configure and make in build/plain);
# without a binary the pgmux rows show n/a.
#
# Environment (defaults in brackets):
#   BENCH_SECONDS [15]          length of each pgbench run
#   BENCH_RUNS [1]              repetitions: every target runs once per repetition,
#                               in turn (targets interleaved, so a slow spell of the
#                               machine hits them all), and the table gives the median
#                               of each figure, with every run's CPU per transaction
#   BENCH_CLIENTS ["10 100 1000"]
#   BENCH_MODES ["simple extended prepared"]  pgbench -M values; with simple and
#                               prepared both in, a second table gives each
#                               target's prepared/simple TPS ratio
#   BENCH_WORKERS ["1"]         pgmux workers; "1 2" adds workers=2 rows
#   BENCH_POOL_SIZE [20]        server pool size of pgmux and pgbouncer
#   BENCH_TARGETS ["pgmux pgbouncer direct"]
#   BENCH_SCALE [1]             pgbench -i scale
#   BENCH_THREADS [2]           pgbench -j
#   BENCH_WARMUP [2]            seconds of unrecorded warm-up per target
#   BENCH_CONNECT_MAX [300]     seconds allowed for the login phase of a run
#   BENCH_RESULTS_DIR [tests/bench/results]
#   BENCH_TLS [0]               1: clients connect over TLS (pgbench sslmode=require;
#                               pgmux and pgbouncer client_tls_sslmode = require with a
#                               certificate made here, PostgreSQL ssl = on for direct), and
#                               both poolers reach PostgreSQL over TLS too (server_tls_sslmode
#                               = require); 0: plaintext everywhere
#   BENCH_CONNECT [0]           1: pgbench -C, a new connection (and a full login, with its
#                               TLS handshake under BENCH_TLS=1) per transaction: TPS is then
#                               logins per second and pooler CPU is per login
#   PGMUX_BIN [build/plain/pgmux, the build tests/run-all.sh makes; else ./pgmux]
#   PGBOUNCER_BIN [/usr/sbin/pgbouncer]
#   BENCH_KEEP_STATE        set: keep .state/bench (logs of every run) at the end
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PGENV_TAG=bench
# shellcheck source=tests/lib/pgenv.sh
. "$ROOT/tests/lib/pgenv.sh"

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	printf 'bench: error: %s\n' "$*" >&2
	exit 1
}

BENCH_SECONDS=${BENCH_SECONDS:-15}
BENCH_RUNS=${BENCH_RUNS:-1}
BENCH_CLIENTS=${BENCH_CLIENTS:-10 100 1000}
BENCH_MODES=${BENCH_MODES:-simple extended prepared}
BENCH_WORKERS=${BENCH_WORKERS:-1}
BENCH_POOL_SIZE=${BENCH_POOL_SIZE:-20}
BENCH_TARGETS=${BENCH_TARGETS:-pgmux pgbouncer direct}
BENCH_SCALE=${BENCH_SCALE:-1}
BENCH_THREADS=${BENCH_THREADS:-2}
BENCH_WARMUP=${BENCH_WARMUP:-2}
BENCH_TLS=${BENCH_TLS:-0}
BENCH_CONNECT=${BENCH_CONNECT:-0}
BENCH_CONNECT_MAX=${BENCH_CONNECT_MAX:-300}
BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-$ROOT/tests/bench/results}
if [ -z "${PGMUX_BIN:-}" ]; then
	PGMUX_BIN=$ROOT/build/plain/pgmux
	[ -x "$PGMUX_BIN" ] || PGMUX_BIN=$ROOT/pgmux
fi
PGBOUNCER_BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}

case "$BENCH_TLS$BENCH_CONNECT" in 00 | 01 | 10 | 11) ;; *) die "BENCH_TLS and BENCH_CONNECT take 0 or 1" ;; esac
case "$BENCH_RUNS" in '' | *[!0-9]* | 0) die "BENCH_RUNS takes a positive whole number" ;; esac
for v in BENCH_SECONDS BENCH_CONNECT_MAX BENCH_POOL_SIZE BENCH_SCALE BENCH_THREADS BENCH_WARMUP; do
	case "${!v}" in '' | *[!0-9]*) die "$v must be a whole number" ;; esac
done
for c in $BENCH_CLIENTS $BENCH_WORKERS; do
	case "$c" in '' | *[!0-9]* | 0) die "BENCH_CLIENTS and BENCH_WORKERS take positive whole numbers" ;; esac
done
for m in $BENCH_MODES; do
	case "$m" in simple | extended | prepared) ;; *) die "unknown BENCH_MODES entry: $m" ;; esac
done
for t in $BENCH_TARGETS; do
	case "$t" in pgmux | pgbouncer | direct) ;; *) die "unknown BENCH_TARGETS entry: $t" ;; esac
done

pgenv_find_bindir
[ -x "$PGBOUNCER_BIN" ] || die "no pgbouncer at $PGBOUNCER_BIN (run tests/install-deps.sh)"

max_clients=0
for c in $BENCH_CLIENTS; do [ "$c" -gt "$max_clients" ] && max_clients=$c; done

# Each client is a socket in pgbench, the pooler and (direct) PostgreSQL.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt $((max_clients * 2 + 100)) ]; then
	log "warning: open-files limit $NOFILE is low for $max_clients clients"
fi

# --- state and cleanup ----------------------------------------------------
STATE=""
SOCK=""
POOLER_PID=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$POOLER_PID" ]; then
		pgenv_stop_pid "$POOLER_PID" 10
	fi
	if [ -n "$STATE" ] && [ -d "$STATE/pgdata" ]; then
		pgenv_stop_cluster "$STATE/pgdata"
	fi
	if [ -n "$SOCK" ] && [ "${SOCK#"$STATE"/}" = "$SOCK" ]; then
		rm -rf "$SOCK"
	fi
	if [ -n "$STATE" ]; then
		if [ -n "${BENCH_KEEP_STATE:-}" ]; then
			log "kept $STATE (BENCH_KEEP_STATE)"
		else
			rm -rf "$STATE"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

STATE_WANTED=${BENCH_STATE_DIR:-$ROOT/.state/bench}
pgenv_stop_stale "$STATE_WANTED"
STATE=$(pgenv_make_state_dir "$STATE_WANTED" bench)
SOCK=$(pgenv_socket_dir "$STATE" bench)
mkdir -p "$STATE/runs"

# --- TLS ------------------------------------------------------------------
# BENCH_TLS=1: one P-256 certificate for 127.0.0.1, used by PostgreSQL and
# both poolers; pgbench only asks for encryption (sslmode=require).
TLS_CLIENT="" TLS_SERVER="" PG_TLS=()
PGSSLMODE_BENCH=disable
if [ "$BENCH_TLS" = 1 ]; then
	command -v openssl >/dev/null || die "BENCH_TLS=1 needs the openssl command"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
		-keyout "$STATE/tls.key" -out "$STATE/tls.crt" >/dev/null 2>&1 || die "openssl req failed"
	chmod 600 "$STATE/tls.key"
	[ "$(id -u)" -eq 0 ] && chown "$PGENV_RUN_USER:" "$STATE/tls.key" "$STATE/tls.crt"
	TLS_CLIENT="client_tls_sslmode = require
client_tls_cert_file = $STATE/tls.crt
client_tls_key_file = $STATE/tls.key"
	TLS_SERVER="server_tls_sslmode = require"
	PG_TLS=("ssl = on" "ssl_cert_file = '$STATE/tls.crt'" "ssl_key_file = '$STATE/tls.key'")
	PGSSLMODE_BENCH=require
else
	TLS_SERVER="server_tls_sslmode = disable"
fi
CONNECT_FLAG=()
[ "$BENCH_CONNECT" = 1 ] && CONNECT_FLAG=(-C)

# --- PostgreSQL -----------------------------------------------------------
PG_PORT=$(pgenv_free_port)
log "PostgreSQL on 127.0.0.1:$PG_PORT"
pgenv_init_cluster "$STATE/pgdata" "$SOCK" "$PG_PORT" \
	"max_connections = 1100" \
	"shared_buffers = 256MB" \
	"fsync = off" \
	"synchronous_commit = off" \
	"full_page_writes = off" \
	"log_min_messages = warning" "${PG_TLS[@]}"
pgenv_start_cluster "$STATE/pgdata" "$STATE/postgres.log"

PASSWORD=$(pgenv_gen_password)
pgenv_create_app_db "$SOCK" "$PG_PORT" bench "$PASSWORD" bench || die "could not create role bench"
log "pgbench -i -s $BENCH_SCALE"
PGPASSWORD=$PASSWORD "$PGBIN/pgbench" -i -q -s "$BENCH_SCALE" -h 127.0.0.1 -p "$PG_PORT" -U bench bench \
	>"$STATE/pgbench-init.log" 2>&1 || {
	cat "$STATE/pgbench-init.log" >&2
	die "pgbench -i failed"
}
(
	umask 077
	printf '"bench" "%s"\n' "$PASSWORD" >"$STATE/userlist.txt"
)
[ "$(id -u)" -eq 0 ] && chown "$PGENV_RUN_USER:" "$STATE/userlist.txt"

# --- targets --------------------------------------------------------------
# start_target NAME WORKERS: starts the pooler (if any) and sets TARGET_PORT.
start_target() {
	local name=$1 workers=$2 port
	TARGET_PORT=""
	case "$name" in
	direct)
		TARGET_PORT=$PG_PORT
		return 0
		;;
	pgbouncer)
		port=$(pgenv_free_port)
		cat >"$STATE/pgbouncer.ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PG_PORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $STATE/userlist.txt
pool_mode = transaction
default_pool_size = $BENCH_POOL_SIZE
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 2000
max_db_connections = 0
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
stats_period = 3600
$TLS_CLIENT
$TLS_SERVER
EOF
		[ "$(id -u)" -eq 0 ] && chown "$PGENV_RUN_USER:" "$STATE/pgbouncer.ini"
		pgenv_spawn "$STATE/pgbouncer.log" "$PGBOUNCER_BIN" "$STATE/pgbouncer.ini"
		;;
	pgmux)
		[ -x "$PGMUX_BIN" ] || return 1
		port=$(pgenv_free_port)
		cat >"$STATE/pgmux.ini" <<EOF
[pgmux]
listen_addr = 127.0.0.1
listen_port = $port
workers = $workers
pool_mode = transaction
auth_type = scram-sha-256
auth_file = $STATE/userlist.txt
max_client_conn = 2000
default_pool_size = $BENCH_POOL_SIZE
log_level = warn
$TLS_CLIENT
$TLS_SERVER

[database.bench]
host = 127.0.0.1
port = $PG_PORT
dbname = bench
EOF
		[ "$(id -u)" -eq 0 ] && chown "$PGENV_RUN_USER:" "$STATE/pgmux.ini"
		PGMUX_RUN=$(pgenv_runnable_bin "$PGMUX_BIN" "$STATE")
		if ! pgenv_as_user "$PGMUX_RUN" --check "$STATE/pgmux.ini" >>"$STATE/pgmux.log" 2>&1; then
			log "pgmux --check rejected the bench config:"
			tail -n 20 "$STATE/pgmux.log" >&2 || true
			return 1
		fi
		pgenv_spawn "$STATE/pgmux.log" "$PGMUX_RUN" "$STATE/pgmux.ini"
		;;
	esac
	POOLER_PID=$PGENV_PID
	echo "$POOLER_PID" >"$STATE/$name.pid"
	if ! pgenv_wait_port "$port" "$POOLER_PID" 15; then
		log "$name did not start listening on 127.0.0.1:$port:"
		tail -n 20 "$STATE/$name.log" >&2 || true
		pgenv_stop_pid "$POOLER_PID" 5
		POOLER_PID=""
		return 1
	fi
	TARGET_PORT=$port
}

stop_target() {
	if [ -n "$POOLER_PID" ]; then
		pgenv_stop_pid "$POOLER_PID" 10
		POOLER_PID=""
	fi
	rm -f "$STATE"/*.pid
}

# CPU time (user + system) of a process and all its threads, in clock ticks.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
	local pid=$1 stat
	if [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ]; then
		echo ""
		return 0
	fi
	stat=$(cat "/proc/$pid/stat")
	# Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
	stat=${stat##*) }
	# shellcheck disable=SC2086
	set -- $stat
	echo $((${12} + ${13}))
}

declare -A TPS LAT CPU CONN
FAILURES=() # failures and notes, one line each

# run_pgbench PORT MODE CLIENTS SECONDS LOGFILE
run_pgbench() {
	local port=$1 mode=$2 clients=$3 secs=$4 out=$5 jobs=$BENCH_THREADS
	[ "$clients" -lt "$jobs" ] && jobs=$clients
	PGSSLMODE=$PGSSLMODE_BENCH PGPASSWORD=$PASSWORD timeout -k 10 $((secs + 180)) "$PGBIN/pgbench" -n -S -M "$mode" "${CONNECT_FLAG[@]}" \
		-c "$clients" -j "$jobs" -T "$secs" -h 127.0.0.1 -p "$port" -U bench bench >"$out" 2>&1
}

# measure KEY PORT MODE CLIENTS
#
# pgbench opens all its connections before its first transaction, but its -T
# clock runs from the start: 1000 SCRAM logins can take longer than the whole
# run. So pgbench runs with -P 1 and room for the logins; the measured window
# starts at its first progress line (every client connected), lasts
# BENCH_SECONDS progress lines, and then pgbench is stopped. TPS and latency
# come from those lines; the pooler's CPU is sampled at both ends of the
# window, so logins are not counted in it. "connect s" is the login phase.
measure() {
	local key=$1 port=$2 mode=$3 clients=$4 out jobs=$BENCH_THREADS bpid rc=0
	local n n0="" n1="" t0="" t1="" stats tps lat txns failed conn
	out="$STATE/runs/${key//[| ]/_}.log"
	[ "$clients" -lt "$jobs" ] && jobs=$clients
	PGSSLMODE=$PGSSLMODE_BENCH PGPASSWORD=$PASSWORD timeout -k 10 $((BENCH_SECONDS + BENCH_CONNECT_MAX + 30)) \
		"$PGBIN/pgbench" -n -S -M "$mode" "${CONNECT_FLAG[@]}" -c "$clients" -j "$jobs" -P 1 \
		-T $((BENCH_SECONDS + BENCH_CONNECT_MAX)) -h 127.0.0.1 -p "$port" -U bench bench \
		>"$out" 2>&1 &
	bpid=$!
	while kill -0 "$bpid" 2>/dev/null; do
		n=$(grep -c '^progress:' "$out" || true)
		if [ -z "$n0" ] && [ "$n" -ge 1 ]; then
			t0=$(cpu_ticks "$POOLER_PID")
			n0=$n
		elif [ -n "$n0" ] && [ "$n" -ge $((n0 + BENCH_SECONDS)) ]; then
			t1=$(cpu_ticks "$POOLER_PID")
			n1=$n
			kill -TERM "$bpid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	wait "$bpid" 2>/dev/null || rc=$?

	if [ -z "$n1" ]; then
		TPS[$key]=fail
		LAT[$key]=fail
		if [ -z "$n0" ] && { [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; }; then
			why="logins took more than $((BENCH_CONNECT_MAX + BENCH_SECONDS))s (pgbench exit $rc)"
		else
			why="pgbench failed (exit $rc)"
		fi
		FAILURES+=("$key: $why: $( (grep -m1 -iE 'error|fatal|abort' "$out" || tail -n1 "$out") | cut -c1-200)")
		log "  $key: FAILED: $why"
		tail -n 5 "$out" | sed 's/^/    /' >&2
		return 0
	fi
	# Lines n0+1 .. n1 of "progress: 12.0 s, 14012.3 tps, lat 0.712 ms stddev 0.2, 0 failed"
	stats=$(grep '^progress:' "$out" | awk -v from=$((n0 + 1)) -v to="$n1" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == "s,") conn = $(i - 1) - 1 }
		NR >= from && NR <= to {
			t = l = f = 0
			for (i = 1; i <= NF; i++) {
				if ($i == "tps,") t = $(i - 1)
				if ($i == "lat") l = $(i + 1)
				if ($i ~ /^failed/) f = $(i - 1)
			}
			sum_t += t; sum_tl += t * l; sum_f += f; lines++
		}
		END {
			if (lines == 0 || sum_t == 0) { print "0 0 0 0 0"; exit }
			printf "%.1f %.3f %d %d %.1f\n", sum_t / lines, sum_tl / sum_t, sum_t, sum_f, conn < 0 ? 0 : conn
		}')
	read -r tps lat txns failed conn <<<"$stats"
	if grep -q 'aborted in command' "$out"; then
		# pgbench drops a client at its first error; the others' figures
		# would be reported as if nothing happened
		TPS[$key]=fail
		LAT[$key]=fail
		FAILURES+=("$key: $(grep -c 'aborted in command' "$out") clients aborted: $(grep -m1 -iE 'error' "$out" | cut -c1-200)")
		log "  $key: FAILED: clients aborted"
		return 0
	fi
	if [ "$txns" = 0 ]; then
		TPS[$key]=fail
		LAT[$key]=fail
		FAILURES+=("$key: no transactions in the measured window")
		log "  $key: FAILED: no transactions in the measured window"
		return 0
	fi
	TPS[$key]=$tps
	LAT[$key]=$lat
	CONN[$key]=$conn
	CPU[$key]=""
	if [ -n "$t0" ] && [ -n "$t1" ]; then
		# microseconds of pooler CPU per transaction
		CPU[$key]=$(awk -v d=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$txns" 'BEGIN {printf "%.1f", d / hz * 1e6 / n}')
	fi
	if [ "$failed" != 0 ]; then
		FAILURES+=("$key: $failed failed transactions")
	fi
	log "  $key: tps=$tps latency=${lat}ms connect=${conn}s${CPU[$key]:+ cpu=${CPU[$key]}us/txn}"
}

ROWS=()
for target in $BENCH_TARGETS; do
	if [ "$target" = pgmux ]; then
		for w in $BENCH_WORKERS; do ROWS+=("pgmux workers=$w"); done
	else
		ROWS+=("$target")
	fi
done

# The date and pooler versions, for the results file.
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STAMP=$(date -u +%Y%m%d-%H%M%S)

for rep in $(seq 1 "$BENCH_RUNS"); do
	[ "$BENCH_RUNS" -gt 1 ] && log "run $rep of $BENCH_RUNS"
	for row in "${ROWS[@]}"; do
		target=${row%% *}
		workers=1
		[ "$target" = pgmux ] && workers=${row#pgmux workers=}
		# A free port can be taken by someone else before the pooler binds it:
		# try again on another port.
		started=0
		for attempt in 1 2 3; do
			if start_target "$target" "$workers"; then
				started=1
				break
			fi
			[ "$target" = pgmux ] && [ ! -x "$PGMUX_BIN" ] && break
			log "$row: start attempt $attempt failed"
		done
		if [ "$started" -eq 0 ]; then
			why="did not start"
			[ "$target" = pgmux ] && [ ! -x "$PGMUX_BIN" ] && why="no binary at $PGMUX_BIN (run make)"
			log "$row: $why"
			for clients in $BENCH_CLIENTS; do
				for mode in $BENCH_MODES; do
					TPS["$clients|$mode|$row@$rep"]=n/a
					LAT["$clients|$mode|$row@$rep"]=n/a
				done
			done
			FAILURES+=("$row: $why")
			continue
		fi
		log "$row on 127.0.0.1:$TARGET_PORT"
		if [ "$BENCH_WARMUP" -gt 0 ]; then
			run_pgbench "$TARGET_PORT" simple 10 "$BENCH_WARMUP" "$STATE/runs/warmup.log" ||
				log "  warm-up run failed (going on)"
		fi
		for clients in $BENCH_CLIENTS; do
			for mode in $BENCH_MODES; do
				measure "$clients|$mode|$row@$rep" "$TARGET_PORT" "$mode" "$clients"
			done
		done
		stop_target
	done
done

# The median of each figure over the runs ("fail" or "n/a" if any run was).
median() {
	local v
	for v in "$@"; do
		[[ "$v" =~ ^[0-9]+(\.[0-9]+)?$ ]] || {
			echo "$v"
			return 0
		}
	done
	printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 }
		END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
declare -A CPU_RUNS
for clients in $BENCH_CLIENTS; do
	for mode in $BENCH_MODES; do
		for row in "${ROWS[@]}"; do
			key="$clients|$mode|$row"
			for fig in TPS LAT CPU CONN; do
				declare -n arr=$fig
				vals=()
				for rep in $(seq 1 "$BENCH_RUNS"); do
					[ -n "${arr["$key@$rep"]:-}" ] && vals+=("${arr["$key@$rep"]}")
				done
				[ "${#vals[@]}" -gt 0 ] && arr[$key]=$(median "${vals[@]}")
				[ "$fig" = CPU ] && [ "${#vals[@]}" -gt 0 ] && CPU_RUNS[$key]=$(IFS=/; echo "${vals[*]}")
				unset -n arr
			done
		done
	done
done

# --- table ----------------------------------------------------------------
is_num() { [[ "$1" =~ ^[0-9]+(\.[0-9]+)?$ ]]; }
ratio() {
	if is_num "$1" && is_num "$2" && [ "$2" != 0 ]; then
		awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "—" }'
	else
		echo "—"
	fi
}
fmt_tps() { if is_num "$1"; then awk -v x="$1" 'BEGIN {printf "%.0f", x}'; else echo "$1"; fi; }

pg_version=$("$PGBIN/postgres" --version | awk '{print $3}')
pgb_version=$("$PGBOUNCER_BIN" --version 2>/dev/null | awk 'NR == 1 {print $NF}')
pgmux_version=n/a
[ -x "$PGMUX_BIN" ] && pgmux_version=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "working tree")

{
	echo "# pgmux benchmark, $STARTED"
	echo
	echo "pgbench -S -n (select-only; -M per mode), -j $BENCH_THREADS, ${BENCH_SECONDS}s per run," \
		"scale $BENCH_SCALE; pool size $BENCH_POOL_SIZE for pgmux and pgbouncer (transaction mode);" \
		"everything on 127.0.0.1 on one machine ($(nproc) CPUs, $(uname -m))."
	echo "PostgreSQL $pg_version (fsync=off, shared_buffers=256MB, max_connections=1100)," \
		"PgBouncer $pgb_version, pgmux $pgmux_version. SCRAM-SHA-256 logins." \
		"$([ "$BENCH_TLS" = 1 ] && echo "TLS: clients (sslmode=require) and servers (server_tls_sslmode = require, PostgreSQL ssl = on), P-256 certificate." || echo "No TLS.")" \
		"$([ "$BENCH_CONNECT" = 1 ] && echo "pgbench -C: one connection and login per transaction (TPS = logins/s, CPU per login).")"
	echo "Load average (1, 5, 15 min) at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)" \
		"(anything else running on the machine skews the figures)."
	[ "$BENCH_RUNS" -gt 1 ] && echo "Every figure is the median of $BENCH_RUNS runs, the targets taking turns in each" \
		"repetition; the last column gives each run's pooler CPU per transaction."
	echo "TPS, latency and pooler CPU are measured over ${BENCH_SECONDS}s once every client is" \
		"connected (pgbench -P 1 lines); \"connect s\" is how long the logins took before that." \
		"Pooler CPU is the pooler process's user+system time in that window over its transactions."
	echo
	if [ "$BENCH_RUNS" -gt 1 ]; then
		echo "| clients | mode | target | TPS | avg latency ms | connect s | pooler CPU µs/txn | CPU pgmux/pgbouncer | TPS pgmux/pgbouncer | TPS pgmux/direct | CPU per run |"
		echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
	else
		echo "| clients | mode | target | TPS | avg latency ms | connect s | pooler CPU µs/txn | CPU pgmux/pgbouncer | TPS pgmux/pgbouncer | TPS pgmux/direct |"
		echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
	fi
	for clients in $BENCH_CLIENTS; do
		for mode in $BENCH_MODES; do
			for row in "${ROWS[@]}"; do
				key="$clients|$mode|$row"
				r_pgb="—"
				r_dir="—"
				r_cpu="—"
				if [ "${row%% *}" = pgmux ]; then
					r_cpu=$(ratio "${CPU[$key]:-}" "${CPU["$clients|$mode|pgbouncer"]:-}")
					r_pgb=$(ratio "${TPS[$key]:-}" "${TPS["$clients|$mode|pgbouncer"]:-}")
					r_dir=$(ratio "${TPS[$key]:-}" "${TPS["$clients|$mode|direct"]:-}")
				fi
				cpu=${CPU[$key]:-}
				[ -z "$cpu" ] && cpu="—"
				line="| $clients | $mode | $row | $(fmt_tps "${TPS[$key]:-n/a}") | ${LAT[$key]:-n/a} | ${CONN[$key]:-—} | $cpu | $r_cpu | $r_pgb | $r_dir |"
				[ "$BENCH_RUNS" -gt 1 ] && line="$line ${CPU_RUNS[$key]:-—} |"
				echo "$line"
			done
		done
	done
	if [[ " $BENCH_MODES " == *" simple "* && " $BENCH_MODES " == *" prepared "* ]]; then
		echo
		echo "Named prepared statements against the simple protocol, same run (TPS ratio):"
		echo
		echo "| clients | target | -M prepared / -M simple | -M extended / -M simple |"
		echo "|---:|---|---:|---:|"
		for clients in $BENCH_CLIENTS; do
			for row in "${ROWS[@]}"; do
				simple=${TPS["$clients|simple|$row"]:-}
				echo "| $clients | $row | $(ratio "${TPS["$clients|prepared|$row"]:-}" "$simple") |" \
					"$(ratio "${TPS["$clients|extended|$row"]:-}" "$simple") |"
			done
		done
	fi
	if [ "${#FAILURES[@]}" -gt 0 ]; then
		echo
		echo "Notes:"
		for f in "${FAILURES[@]}"; do echo "- $f"; done
	fi
} >"$STATE/results.md"

mkdir -p "$BENCH_RESULTS_DIR"
cp "$STATE/results.md" "$BENCH_RESULTS_DIR/$STAMP.md"
echo
cat "$STATE/results.md"
echo
log "saved $BENCH_RESULTS_DIR/$STAMP.md"
