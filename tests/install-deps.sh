#!/usr/bin/env bash
# Installs what pgmux's build, tests, demo and benchmarks need on Debian 12.
#
# Idempotent: safe to run again when everything is already there. Runs
# without a terminal (CI=true, no stdin). As root it runs `apt-get update`,
# installs the packages, stops and disables the pgbouncer system service the
# Debian package starts (the tests and benchmarks run their own pgbouncer),
# and makes sure a `postgres` system user exists. As another user it only
# checks: it prints what is missing and exits 1 if anything is. Either way
# it then runs `npm ci` in tests/integration/node if node_modules is missing.
set -euo pipefail

# Everything the build (configure.ac), `make check`, the integration tests,
# tests/demo.sh and tests/bench/bench.sh use:
#   build: build-essential autoconf automake libtool pkg-config + the -dev libs
#   sanitizer and fuzz builds: clang libclang-rt-14-dev (libFuzzer, ASan/UBSan
#     runtimes for clang; gcc's come with build-essential)
#   unit tests: check
#   servers and clients: postgresql-15 (initdb, pg_ctl, postgres, pgbench),
#     postgresql-client-15 (psql, pg_isready), pgbouncer
#   integration tests: python3-pytest python3-psycopg python3-asyncpg,
#     nodejs npm (node-postgres, installed from the npm registry by
#     `npm ci` in tests/integration/node: see install_node_modules below)
#   scripts: procps (pgrep, ps), iproute2 (ss), util-linux (runuser, setpriv),
#     coreutils (timeout), passwd (useradd), findutils, openssl (the TLS tests
#     make their certificates with it), strace (test_transport counts the
#     system calls of a transaction)
PACKAGES=(
	build-essential autoconf automake libtool pkg-config
	clang libclang-rt-14-dev
	libevent-dev libssl-dev libpq-dev libinih-dev libjansson-dev
	check
	postgresql-15 postgresql-client-15 pgbouncer
	python3-pytest python3-psycopg python3-asyncpg
	procps iproute2 util-linux coreutils passwd findutils openssl strace
)
# Debian's nodejs and npm, unless a node and an npm are already installed:
# a NodeSource nodejs package bundles npm and conflicts with Debian's npm
# package, so asking apt for npm there would fail.
if ! { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; }; then
	PACKAGES+=(nodejs npm)
fi

NODE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/integration/node"

log() { printf 'install-deps: %s\n' "$*"; }

# node-postgres for tests/integration/test_prepared.py, from the npm registry
# at the versions of package-lock.json, into tests/integration/node/node_modules
# (git-ignored). Nothing to do when it is already there. Needs no root.
install_node_modules() {
	if [ -d "$NODE_DIR/node_modules/pg" ]; then
		log "node modules present in $NODE_DIR"
		return 0
	fi
	if ! command -v npm >/dev/null 2>&1; then
		log "npm is missing: cannot install the node modules in $NODE_DIR"
		return 1
	fi
	log "npm ci in $NODE_DIR"
	(cd "$NODE_DIR" && npm ci --no-audit --no-fund </dev/null)
}

missing_packages() {
	local p status
	for p in "${PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
		[ "$status" = installed ] || printf '%s\n' "$p"
	done
}

if [ "$(id -u)" -ne 0 ]; then
	mapfile -t missing < <(missing_packages)
	if [ "${#missing[@]}" -gt 0 ]; then
		log "not root; these packages are missing:"
		log "  ${missing[*]}"
		log "install them as root with:"
		log "  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
		exit 1
	fi
	if ! id postgres >/dev/null 2>&1; then
		log "note: no postgres system user (only needed when the scripts run as root)"
	fi
	log "all ${#PACKAGES[@]} packages present"
	install_node_modules
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)

mapfile -t missing < <(missing_packages)

log "apt-get update"
if ! apt-get "${APT_OPTS[@]}" update -q </dev/null; then
	# Without fresh lists we can still go on when nothing is missing.
	if [ "${#missing[@]}" -gt 0 ]; then
		log "apt-get update failed and packages are missing: ${missing[*]}"
		exit 1
	fi
	log "warning: apt-get update failed; every package is already installed, going on"
fi

if [ "${#missing[@]}" -gt 0 ]; then
	log "installing: ${missing[*]}"
	# Only what is missing: packages already there are not upgraded behind
	# the user's back.
	apt-get "${APT_OPTS[@]}" install -y -q --no-install-recommends "${missing[@]}" </dev/null
else
	log "all ${#PACKAGES[@]} packages already installed"
fi

mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -gt 0 ]; then
	log "still missing after install: ${missing[*]}"
	exit 1
fi

# The pgbouncer package enables and starts a system service on port 6432. We
# run our own instances on free ports; stop and disable the system one.
# systemctl exists in containers without systemd as PID 1, so check that
# systemd is really running before trusting it.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable --now pgbouncer.service >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1; then
	service pgbouncer stop >/dev/null 2>&1 || true
elif [ -x /etc/init.d/pgbouncer ]; then
	/etc/init.d/pgbouncer stop >/dev/null 2>&1 || true
fi
if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/pgbouncer ]; then
	update-rc.d pgbouncer disable >/dev/null 2>&1 || true
fi
# Last resort: a system pgbouncer still running, found by its own pidfile.
sys_pidfile=$(awk -F= '/^[[:space:]]*pidfile[[:space:]]*=/ {gsub(/[[:space:]]/, "", $2); print $2}' \
	/etc/pgbouncer/pgbouncer.ini 2>/dev/null || true)
if [ -n "$sys_pidfile" ] && [ -s "$sys_pidfile" ]; then
	pid=$(cat "$sys_pidfile" 2>/dev/null || true)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		log "stopping the system pgbouncer (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
	fi
fi

# postgresql-common creates the postgres user; make sure it is there anyway,
# since the scripts run PostgreSQL and pgbouncer as that user when root.
if ! id postgres >/dev/null 2>&1; then
	log "creating the postgres system user"
	useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash \
		--comment "PostgreSQL administrator" postgres
fi

install_node_modules

log "done: ${#PACKAGES[@]} packages present, pgbouncer service stopped, postgres user exists, node modules installed"
