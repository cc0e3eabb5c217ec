# shellcheck shell=bash
# Helpers shared by tests/demo.sh and tests/bench/bench.sh: a throw-away
# PostgreSQL cluster in a state directory of its own (never the system
# cluster), free ports on 127.0.0.1, running programs as the postgres user
# when root, and stopping what was started by its pid.
#
# Source it from bash; it sets no shell options of its own.

# The user PostgreSQL, pgbouncer and pgmux run as: postgres when root (both
# PostgreSQL and pgbouncer refuse to run as root), else the caller.
if [ "$(id -u)" -eq 0 ]; then
	PGENV_RUN_USER=postgres
else
	PGENV_RUN_USER=$(id -un)
fi
PGENV_USED_PORTS=" "

pgenv_log() { printf '%s: %s\n' "${PGENV_TAG:-pgenv}" "$*" >&2; }
pgenv_die() {
	pgenv_log "error: $*"
	exit 1
}

# PostgreSQL's server binaries: Debian keeps them out of PATH.
pgenv_find_bindir() {
	local d
	if [ -n "${PGBIN:-}" ] && [ -x "$PGBIN/pg_ctl" ]; then
		return 0
	fi
	# shellcheck disable=SC2012 # version directories: plain names
	for d in /usr/lib/postgresql/15/bin $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
		if [ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] && [ -x "$d/pgbench" ]; then
			PGBIN=$d
			return 0
		fi
	done
	pgenv_die "no PostgreSQL server binaries under /usr/lib/postgresql (run tests/install-deps.sh)"
}

# Run a short command as the run user (runuser when root).
pgenv_as_user() {
	if [ "$(id -u)" -eq 0 ]; then
		# From /, which the run user can always enter (the cwd may be a
		# checkout it cannot reach); every path given is absolute.
		(cd / && runuser -u "$PGENV_RUN_USER" -- "$@")
	else
		"$@"
	fi
}

# Start a long-running program as the run user in the background; its pid
# (the program's own: setpriv execs, it does not fork) goes in PGENV_PID.
pgenv_spawn() {
	local log=$1
	shift
	if [ "$(id -u)" -eq 0 ]; then
		(cd / && exec setpriv --reuid="$PGENV_RUN_USER" --regid="$PGENV_RUN_USER" \
			--init-groups -- "$@") </dev/null >>"$log" 2>&1 &
	else
		"$@" </dev/null >>"$log" 2>&1 &
	fi
	# shellcheck disable=SC2034 # read by the scripts that source this file
	PGENV_PID=$!
}

# A directory the run user owns. Prefers DIR; when the run user cannot reach
# it (e.g. a checkout under /root, mode 700), falls back to a new directory
# under /tmp. The path actually used goes to stdout.
pgenv_make_state_dir() {
	local dir=$1 tag=$2
	mkdir -p "$dir"
	chmod 700 "$dir"
	if [ "$(id -u)" -eq 0 ]; then
		chown "$PGENV_RUN_USER:" "$dir"
		if ! runuser -u "$PGENV_RUN_USER" -- test -w "$dir" -a -x "$dir"; then
			rmdir "$dir" 2>/dev/null || true
			dir=$(mktemp -d "/tmp/pgmux-$tag.XXXXXX")
			chmod 700 "$dir"
			chown "$PGENV_RUN_USER:" "$dir"
			pgenv_log "the $PGENV_RUN_USER user cannot reach the repository; state is in $dir"
		fi
	fi
	printf '%s\n' "$dir"
}

# A path to BIN that the run user can execute: BIN itself, or (when the run
# user cannot reach the checkout) a copy in STATE. Goes to stdout.
pgenv_runnable_bin() {
	local bin=$1 state=$2
	if [ "$(id -u)" -ne 0 ] || runuser -u "$PGENV_RUN_USER" -- test -x "$bin"; then
		printf '%s\n' "$bin"
		return 0
	fi
	mkdir -p "$state/bin"
	cp "$bin" "$state/bin/"
	chown -R "$PGENV_RUN_USER:" "$state/bin"
	printf '%s\n' "$state/bin/$(basename "$bin")"
}

# Is anything listening on 127.0.0.1:PORT (or the wildcard address)?
pgenv_port_listening() {
	[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]
}

# A TCP port nobody listens on and that this script has not handed out yet.
pgenv_free_port() {
	local port tries=0
	while [ $tries -lt 200 ]; do
		port=$((20000 + (RANDOM * 32768 + RANDOM) % 30000))
		tries=$((tries + 1))
		case "$PGENV_USED_PORTS" in *" $port "*) continue ;; esac
		pgenv_port_listening "$port" && continue
		PGENV_USED_PORTS="$PGENV_USED_PORTS$port "
		printf '%s\n' "$port"
		return 0
	done
	pgenv_die "no free TCP port found"
}

# Wait until PORT listens, or fail when PID dies or SECONDS_MAX pass.
pgenv_wait_port() {
	local port=$1 pid=$2 max=${3:-30} i=0
	while ! pgenv_port_listening "$port"; do
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			return 1
		fi
		i=$((i + 1))
		[ $i -gt $((max * 10)) ] && return 1
		sleep 0.1
	done
	return 0
}

# Stop PID: SIGTERM, then SIGKILL after SECONDS_MAX. Only ever a pid this
# script started.
pgenv_stop_pid() {
	local pid=$1 max=${2:-10} i=0
	[ -n "$pid" ] || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt $((max * 10)) ]; then
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.1
	done
	wait "$pid" 2>/dev/null || true
}

# 32 hex characters from the kernel's CSPRNG: safe in SQL and userlist quoting.
pgenv_gen_password() {
	od -An -tx1 -N16 /dev/urandom | tr -d ' \n'
}

# pgenv_init_cluster DATADIR SOCKDIR PORT [EXTRA_CONF_LINE...]
# initdb (superuser "postgres", trust on the private Unix socket only,
# scram-sha-256 on 127.0.0.1), listening on 127.0.0.1:PORT.
pgenv_init_cluster() {
	local data=$1 sock=$2 port=$3 line
	shift 3
	pgenv_find_bindir
	pgenv_as_user "$PGBIN/initdb" -D "$data" -U postgres -E UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256 >"$data.initdb.log" 2>&1 ||
		{
			cat "$data.initdb.log" >&2
			pgenv_die "initdb failed"
		}
	{
		echo "# added by ${PGENV_TAG:-pgenv}"
		echo "listen_addresses = '127.0.0.1'"
		echo "port = $port"
		echo "unix_socket_directories = '$sock'"
		echo "unix_socket_permissions = 0700"
		echo "password_encryption = 'scram-sha-256'"
		echo "logging_collector = off"
		for line in "$@"; do
			echo "$line"
		done
	} >>"$data/postgresql.conf"
	{
		echo "# TYPE DATABASE USER ADDRESS METHOD"
		echo "local all all trust"
		echo "host all all 127.0.0.1/32 scram-sha-256"
	} >"$data/pg_hba.conf"
}

# pgenv_start_cluster DATADIR LOGFILE
pgenv_start_cluster() {
	local data=$1 log=$2
	pgenv_as_user "$PGBIN/pg_ctl" start -D "$data" -l "$log" -w -t 60 >/dev/null ||
		{
			tail -n 30 "$log" >&2 || true
			pgenv_die "PostgreSQL did not start"
		}
}

# pgenv_stop_cluster DATADIR: fast shutdown, immediate if that hangs.
pgenv_stop_cluster() {
	local data=$1
	[ -f "$data/postmaster.pid" ] || return 0
	pgenv_as_user "$PGBIN/pg_ctl" stop -D "$data" -m fast -w -t 30 >/dev/null 2>&1 ||
		pgenv_as_user "$PGBIN/pg_ctl" stop -D "$data" -m immediate -w -t 30 >/dev/null 2>&1 ||
		true
}

# pgenv_psql_admin SOCKDIR PORT DB: psql as the superuser over the private
# socket, SQL on stdin (so no password ever shows in ps).
pgenv_psql_admin() {
	local sock=$1 port=$2 db=$3
	pgenv_as_user "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d "$db"
}

# pgenv_create_app_db SOCKDIR PORT ROLE PASSWORD DBNAME
pgenv_create_app_db() {
	local sock=$1 port=$2 role=$3 password=$4 db=$5
	printf "CREATE ROLE %s LOGIN PASSWORD '%s';\nCREATE DATABASE %s OWNER %s;\n" \
		"$role" "$password" "$db" "$role" | pgenv_psql_admin "$sock" "$port" postgres
}

# The Unix socket path must fit in sun_path (107 bytes with ".s.PGSQL.NNNNN").
pgenv_socket_dir() {
	local state=$1 tag=$2 dir
	dir="$state/sock"
	if [ ${#dir} -gt 80 ]; then
		dir=$(mktemp -d "/tmp/pgmux-$tag-sock.XXXXXX")
	else
		mkdir -p "$dir"
	fi
	chmod 700 "$dir"
	[ "$(id -u)" -eq 0 ] && chown "$PGENV_RUN_USER:" "$dir"
	printf '%s\n' "$dir"
}

# pgenv_stop_stale DIR: a previous run killed before its cleanup: stop the
# processes it recorded in DIR/*.pid (only when that pid still runs a command
# line that names DIR) and its cluster, then remove DIR.
pgenv_stop_stale() {
	local dir=$1 f pid
	[ -d "$dir" ] || return 0
	for f in "$dir"/*.pid; do
		[ -s "$f" ] || continue
		pid=$(cat "$f")
		case "$pid" in '' | *[!0-9]*) continue ;; esac
		if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -F -- "$dir/"; then
			pgenv_log "stopping pid $pid left by an earlier run"
			kill -TERM "$pid" 2>/dev/null || true
			for _ in 1 2 3 4 5 6 7 8 9 10; do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.5
			done
			if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -F -- "$dir/"; then
				kill -KILL "$pid" 2>/dev/null || true
			fi
		fi
	done
	if [ -f "$dir/pgdata/postmaster.pid" ]; then
		pgenv_find_bindir
		pgenv_stop_cluster "$dir/pgdata"
	fi
	rm -rf "$dir"
}
