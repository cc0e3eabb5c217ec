#!/usr/bin/env bash
# The whole pgmux test suite, as CI runs it (.ci/run): installs what is
# missing (tests/install-deps.sh), builds with -Werror, runs the Check unit
# tests (make check) and the pytest integration tests against a real
# PostgreSQL, and prints a summary. Exits non-zero if any step fails, and
# also when pytest collected no test (its exit status 5).
#
# Works from any directory and without a terminal (CI=true, no stdin).
# Environment: PYTEST_ARGS (extra pytest arguments), PYTEST_TIMEOUT (seconds
# for the whole integration run, default 2400), MAKE_JOBS (default 2).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

MAKE_JOBS=${MAKE_JOBS:-2}
PYTEST_TIMEOUT=${PYTEST_TIMEOUT:-2400}
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/pgmux-run-all.XXXXXX")
trap 'rm -rf "$LOGDIR"' EXIT

STEPS=()
STATUS=()
FAILED=0
UNIT_PASSED="" UNIT_FAILED=""
IT_PASSED="" IT_FAILED="" IT_SKIPPED=""

banner() { printf '\n==== %s ====\n' "$*"; }
record() {
	STEPS+=("$1")
	STATUS+=("$2")
	case "$2" in ok*) ;; *) FAILED=1 ;; esac
}

summary() {
	banner "summary"
	local i
	for i in "${!STEPS[@]}"; do
		printf '  %-22s %s\n' "${STEPS[$i]}" "${STATUS[$i]}"
	done
	echo
	if [ "$FAILED" -ne 0 ]; then
		echo "run-all: FAILED"
	else
		echo "run-all: OK"
	fi
	if [ -n "$UNIT_PASSED" ] && [ -n "$IT_PASSED" ]; then
		# Real test counts, last: Check test functions ("Checks") plus pytest tests.
		printf 'run-all: %d passed, %d failed, %d skipped\n' \
			$((UNIT_PASSED + IT_PASSED)) $((UNIT_FAILED + IT_FAILED)) "${IT_SKIPPED:-0}"
	fi
	exit "$FAILED"
}

# A step that must work for the next ones to make sense.
build_step() {
	local name=$1
	shift
	banner "$name: $*"
	if "$@"; then
		record "$name" ok
	else
		record "$name" "FAILED (exit $?)"
		summary
	fi
}

build_step install-deps bash tests/install-deps.sh
mkdir -p m4 # ACLOCAL_AMFLAGS = -I m4, and git keeps no empty directory
build_step autoreconf autoreconf -fi
build_step configure ./configure --enable-werror
build_step make make -j"$MAKE_JOBS"

# --- unit tests (Check, through automake's test harness) --------------------
banner "unit tests: make check"
rm -f check_*.log check_*.trs test-suite.log tests/unit/*.log tests/unit/*.trs
if make -j"$MAKE_JOBS" check; then
	record "unit tests" ok
else
	record "unit tests" "FAILED"
	banner "unit test logs"
	for f in test-suite.log check_*.log tests/unit/*.log; do
		[ -f "$f" ] || continue
		printf -- '---- %s ----\n' "$f"
		cat "$f"
	done
fi
# Each Check program's log ends with "NN%: Checks: N, Failures: F, Errors: E".
UNIT_PASSED=0 UNIT_FAILED=0
for f in check_*.log tests/unit/check_*.log; do
	[ -f "$f" ] || continue
	read -r c fl er < <(awk '/Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+/ {
		for (i = 1; i <= NF; i++) {
			if ($i == "Checks:") c = $(i + 1) + 0
			if ($i == "Failures:") f = $(i + 1) + 0
			if ($i == "Errors:") e = $(i + 1) + 0
		}
	} END { print c + 0, f + 0, e + 0 }' "$f")
	UNIT_PASSED=$((UNIT_PASSED + c - fl - er))
	UNIT_FAILED=$((UNIT_FAILED + fl + er))
done
if [ $((UNIT_PASSED + UNIT_FAILED)) -eq 0 ]; then
	UNIT_PASSED=""
	record "unit tests (count)" "FAILED: no Check test ran"
fi

# --- integration tests (pytest, Debian's python3 with its packages) ----------
banner "integration tests: pytest"
it_log=$LOGDIR/pytest.log
# shellcheck disable=SC2086
PGMUX_BIN=$ROOT/pgmux timeout --kill-after=30 "$PYTEST_TIMEOUT" \
	/usr/bin/python3 -m pytest -v -p no:cacheprovider ${PYTEST_ARGS:-} tests/integration \
	</dev/null 2>&1 | tee "$it_log"
rc=${PIPESTATUS[0]}
case "$rc" in
0) record "integration tests" ok ;;
5) record "integration tests" "FAILED: pytest collected no test (exit 5)" ;;
124) record "integration tests" "FAILED: timed out after ${PYTEST_TIMEOUT}s" ;;
*) record "integration tests" "FAILED (pytest exit $rc)" ;;
esac
# pytest's closing line: "==== 40 passed, 2 skipped in 12.3s ====".
last=$(grep -E '^=+ .*(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$it_log" | tail -n 1)
if [ -n "$last" ]; then
	IT_PASSED=$(grep -oE '[0-9]+ passed' <<<"$last" | awk '{print $1}')
	IT_FAILED=$(grep -oE '[0-9]+ (failed|error|errors)' <<<"$last" | awk '{s += $1} END {print s + 0}')
	IT_SKIPPED=$(grep -oE '[0-9]+ skipped' <<<"$last" | awk '{print $1}')
	IT_PASSED=${IT_PASSED:-0}
fi

summary
