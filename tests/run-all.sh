#!/usr/bin/env bash
# The whole pgmux test suite, as CI runs it (.ci/run). Stages, in order:
#
#   install-deps  tests/install-deps.sh (Debian packages, node modules)
#   plain         build/plain: ./configure --enable-werror; make; make check
#   asan          build/asan: --enable-sanitizers=address (ASan + UBSan);
#                 make check, then the whole pytest integration suite on that
#                 pgmux (LeakSanitizer runs when the harness stops it)
#   tsan          build/tsan: --enable-sanitizers=thread; make check, then the
#                 integration tests marked `threads` (cross-worker hand-off,
#                 cancel from another worker, pool cap under contention,
#                 SIGTERM drain), workers = 2
#   fuzz          build/fuzz: CC=clang --enable-fuzzing; make fuzz, then
#                 tests/fuzz/run.sh: every harness replays its seeds and runs
#                 FUZZ_SECONDS (default 30)
#
# Builds are out of tree, under build/ (git-ignored), so the stages never
# share object files. A sanitizer report fails the test (or unit suite) that
# produced it. Prints a summary with each stage's time and the test counts;
# exits non-zero if anything failed, also when pytest collected no test.
#
# Works from any directory and without a terminal (CI=true, no stdin).
# Environment: STAGES (default "plain asan tsan fuzz"), PYTEST_ARGS (extra
# pytest arguments), PYTEST_TIMEOUT (seconds per pytest run, default 2400),
# MAKE_JOBS (default 2), FUZZ_SECONDS (default 30).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1

MAKE_JOBS=${MAKE_JOBS:-2}
PYTEST_TIMEOUT=${PYTEST_TIMEOUT:-2400}
STAGES=${STAGES:-plain asan tsan fuzz}
export FUZZ_SECONDS=${FUZZ_SECONDS:-30}
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/pgmux-run-all.XXXXXX")
trap 'rm -rf "$LOGDIR"' EXIT

STEPS=()
STATUS=()
FAILED=0
PASSED_N=0 FAILED_N=0 SKIPPED_N=0
RUN_START=$SECONDS

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
		printf '  %-28s %s\n' "${STEPS[$i]}" "${STATUS[$i]}"
	done
	echo
	printf 'run-all: total time %ds\n' $((SECONDS - RUN_START))
	if [ "$FAILED" -ne 0 ]; then
		echo "run-all: FAILED"
	else
		echo "run-all: OK"
	fi
	# Real test counts, last: Check test functions, pytest tests and fuzz
	# harnesses, over all stages.
	printf 'run-all: %d passed, %d failed, %d skipped\n' "$PASSED_N" "$FAILED_N" "$SKIPPED_N"
	exit "$FAILED"
}

# A step that must work for the next ones of its stage to make sense.
# Returns non-zero (after recording) on failure.
step() {
	local name=$1
	shift
	banner "$name: $*"
	local t0=$SECONDS
	if "$@"; then
		record "$name" "ok ($((SECONDS - t0))s)"
	else
		local rc=$?
		record "$name" "FAILED (exit $rc, $((SECONDS - t0))s)"
		return 1
	fi
}

configure_in() {
	local dir=$1
	shift
	mkdir -p "$dir" && (cd "$dir" && "$ROOT/configure" --enable-werror "$@" >configure.out 2>&1) ||
		{ cat "$dir/configure.out" "$dir/config.log" 2>/dev/null | tail -n 60; return 1; }
}

make_in() {
	local dir=$1
	shift
	make -C "$dir" -j"$MAKE_JOBS" "$@"
}

# make check in DIR; counts the Check results from each suite's log.
unit_tests() {
	local dir=$1 name=$2
	banner "$name: make check in $dir"
	local t0=$SECONDS
	rm -f "$dir"/check_*.log "$dir"/check_*.trs "$dir"/test-suite.log
	if make_in "$dir" check; then
		record "$name" "ok ($((SECONDS - t0))s)"
	else
		record "$name" "FAILED ($((SECONDS - t0))s)"
		banner "$name logs"
		local f
		for f in "$dir"/test-suite.log "$dir"/check_*.log; do
			[ -f "$f" ] || continue
			printf -- '---- %s ----\n' "$f"
			cat "$f"
		done
	fi
	# Each Check program's log ends with "NN%: Checks: N, Failures: F, Errors: E".
	local f c fl er n=0
	for f in "$dir"/check_*.log; do
		[ -f "$f" ] || continue
		read -r c fl er < <(awk '/Checks: [0-9]+, Failures: [0-9]+, Errors: [0-9]+/ {
			for (i = 1; i <= NF; i++) {
				if ($i == "Checks:") c = $(i + 1) + 0
				if ($i == "Failures:") f = $(i + 1) + 0
				if ($i == "Errors:") e = $(i + 1) + 0
			}
		} END { print c + 0, f + 0, e + 0 }' "$f")
		PASSED_N=$((PASSED_N + c - fl - er))
		FAILED_N=$((FAILED_N + fl + er))
		n=$((n + c))
	done
	if [ "$n" -eq 0 ]; then
		record "$name (count)" "FAILED: no Check test ran"
	fi
}

# pytest on a pgmux binary. NAME, BINARY, then pytest arguments.
integration() {
	local name=$1 bin=$2
	shift 2
	banner "$name: pytest on $bin"
	local t0=$SECONDS
	local it_log=$LOGDIR/$name.log
	# shellcheck disable=SC2086
	PGMUX_BIN=$bin timeout --kill-after=30 "$PYTEST_TIMEOUT" \
		/usr/bin/python3 -m pytest -v -p no:cacheprovider "$@" ${PYTEST_ARGS:-} tests/integration \
		</dev/null 2>&1 | tee "$it_log"
	local rc=${PIPESTATUS[0]}
	local took="$((SECONDS - t0))s"
	case "$rc" in
	0) record "$name" "ok ($took)" ;;
	5) record "$name" "FAILED: pytest collected no test (exit 5)" ;;
	124) record "$name" "FAILED: timed out after ${PYTEST_TIMEOUT}s" ;;
	*) record "$name" "FAILED (pytest exit $rc, $took)" ;;
	esac
	# pytest's closing line: "==== 40 passed, 2 skipped in 12.3s ====".
	local last p f s
	last=$(grep -E '^=+ .*(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$it_log" | tail -n 1)
	if [ -n "$last" ]; then
		p=$(grep -oE '[0-9]+ passed' <<<"$last" | awk '{print $1}')
		f=$(grep -oE '[0-9]+ (failed|error|errors)' <<<"$last" | awk '{s += $1} END {print s + 0}')
		s=$(grep -oE '[0-9]+ skipped' <<<"$last" | awk '{print $1}')
		PASSED_N=$((PASSED_N + ${p:-0}))
		FAILED_N=$((FAILED_N + ${f:-0}))
		SKIPPED_N=$((SKIPPED_N + ${s:-0}))
	fi
}

has_stage() { case " $STAGES " in *" $1 "*) return 0 ;; esac; return 1; }

step install-deps bash tests/install-deps.sh || summary
mkdir -p m4 # ACLOCAL_AMFLAGS = -I m4, and git keeps no empty directory
if [ -f Makefile ]; then
	# an in-tree configure would make every out-of-tree build refuse to run
	make distclean >/dev/null 2>&1 || true
fi
step autoreconf autoreconf -fi || summary

# Sanitizer runtime settings: every report is fatal and names its frames;
# leaks are checked when a process exits (the harness stops pgmux with
# SIGTERM, which drains and exits normally).
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:halt_on_error=1:print_summary=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# (tests/tsan.supp: races TSan reports inside OpenSSL, which is not instrumented)
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:history_size=4:suppressions=$ROOT/tests/tsan.supp}
export LSAN_OPTIONS=${LSAN_OPTIONS:-print_suppressions=0}

if has_stage plain; then
	stage_t0=$SECONDS
	if step "plain: configure" configure_in build/plain &&
		step "plain: make" make_in build/plain; then
		unit_tests build/plain "plain: unit tests"
	fi
	record "plain: stage time" "ok ($((SECONDS - stage_t0))s)"
fi

if has_stage asan; then
	stage_t0=$SECONDS
	if step "asan: configure" configure_in build/asan --enable-sanitizers=address &&
		step "asan: make" make_in build/asan; then
		unit_tests build/asan "asan: unit tests"
		integration "asan-integration" "$ROOT/build/asan/pgmux"
	fi
	record "asan: stage time" "ok ($((SECONDS - stage_t0))s)"
fi

if has_stage tsan; then
	stage_t0=$SECONDS
	if step "tsan: configure" configure_in build/tsan --enable-sanitizers=thread &&
		step "tsan: make" make_in build/tsan; then
		unit_tests build/tsan "tsan: unit tests"
		integration "tsan-integration" "$ROOT/build/tsan/pgmux" -m threads
	fi
	record "tsan: stage time" "ok ($((SECONDS - stage_t0))s)"
fi

if has_stage fuzz; then
	stage_t0=$SECONDS
	if step "fuzz: configure" configure_in build/fuzz CC=clang --enable-fuzzing &&
		step "fuzz: make fuzz" make_in build/fuzz fuzz; then
		banner "fuzz: tests/fuzz/run.sh build/fuzz (${FUZZ_SECONDS}s each)"
		t0=$SECONDS
		fuzz_log=$LOGDIR/fuzz.log
		bash tests/fuzz/run.sh "$ROOT/build/fuzz" 2>&1 | tee "$fuzz_log"
		rc=${PIPESTATUS[0]}
		np=$(grep -c '^fuzz: PASS' "$fuzz_log")
		nf=$(grep -c '^fuzz: FAIL' "$fuzz_log")
		PASSED_N=$((PASSED_N + np))
		FAILED_N=$((FAILED_N + nf))
		if [ "$rc" -eq 0 ] && [ "$np" -gt 0 ]; then
			record "fuzz: run" "ok ($np harnesses, $((SECONDS - t0))s)"
		else
			record "fuzz: run" "FAILED ($nf failed, exit $rc, $((SECONDS - t0))s)"
		fi
	fi
	record "fuzz: stage time" "ok ($((SECONDS - stage_t0))s)"
fi

summary
