#!/usr/bin/env bash
# Run every libFuzzer harness of a build: tests/fuzz/run.sh BUILD_DIR
# (a build configured with CC=clang --enable-fuzzing, after `make fuzz`).
#
# For each harness binary BUILD_DIR/fuzz_*:
#   1. replay every committed input, tests/fuzz/corpus/<name>/* and
#      tests/fuzz/regressions/<name>/* (-runs=0): the deterministic part;
#   2. fuzz for FUZZ_SECONDS with a fixed -seed, -timeout=10, an RSS limit
#      and a -max_len suited to the harness, on a temporary copy of those
#      inputs (the repository is never written; inputs the fuzzer adds are
#      thrown away: see README.md for how to grow the committed corpus).
# Two harnesses run at a time (FUZZ_JOBS). Each ends in exactly one line,
#   fuzz: PASS <name> (<execs> execs, <corpus> inputs)
#   fuzz: FAIL <name>: <artifact path>
# the latter followed by the report's first stack frames and a short hex
# dump of the input. Crash artifacts are kept in a temporary directory whose
# path is printed; the rest of the scratch space is removed. Exits 1 if a
# harness failed, 2 on a usage error or when BUILD_DIR holds no harness.
#
# Environment: FUZZ_SECONDS (default 30), FUZZ_JOBS (2), FUZZ_SEED (1),
# FUZZ_RSS_MB (2048), FUZZ_ONLY (space-separated harness names to run),
# ASAN_OPTIONS / UBSAN_OPTIONS (defaults below if unset). Works without a
# terminal, as root, with CI=true.
set -uo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
	echo "usage: $0 BUILD_DIR (a build configured with CC=clang --enable-fuzzing, after make fuzz)" >&2
	exit 2
fi
BUILD=$(cd "$1" && pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
FUZZ_JOBS=${FUZZ_JOBS:-2}
FUZZ_SEED=${FUZZ_SEED:-1}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:halt_on_error=1:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Longest input the fuzzer makes for a harness (its seeds may be longer).
# A harness not listed gets the default; add a line for a new one that
# needs another bound.
max_len_for() {
	case "$1" in
	fuzz_startup) echo 12000 ;;                         # packets of up to 10,000 bytes
	fuzz_scram_server | fuzz_scram_client) echo 8200 ;; # two messages of up to 4,096
	fuzz_sqllex | fuzz_sqlscan | fuzz_config | fuzz_authfile | fuzz_proto) echo 16384 ;;
	*) echo 65536 ;;
	esac
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pgmux-fuzz.XXXXXX") || exit 2
ART=$(mktemp -d "${TMPDIR:-/tmp}/pgmux-fuzz-artifacts.XXXXXX") || exit 2
# Scratch files of fuzz_config/fuzz_authfile (rewritten for every input):
# in memory when /dev/shm is there, several times faster than a disk.
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
	SCRATCH=$(mktemp -d /dev/shm/pgmux-fuzz.XXXXXX) || exit 2
else
	SCRATCH=$WORK/scratch
fi
cleanup() {
	rm -rf "$WORK" "$SCRATCH"
	rmdir "$ART" 2>/dev/null || true # kept when it holds an artifact
}
trap cleanup EXIT

HARNESSES=()
for bin in "$BUILD"/fuzz_*; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	name=$(basename "$bin")
	if [ -n "${FUZZ_ONLY:-}" ]; then
		case " $FUZZ_ONLY " in *" $name "*) ;; *) continue ;; esac
	fi
	HARNESSES+=("$name")
done
if [ ${#HARNESSES[@]} -eq 0 ]; then
	echo "fuzz: no harness binary (fuzz_*) in $BUILD: run make fuzz there first" >&2
	exit 2
fi
echo "fuzz: ${#HARNESSES[@]} harnesses, ${FUZZ_SECONDS}s each, $FUZZ_JOBS at a time, seed $FUZZ_SEED; artifacts go to $ART"

# The report of a failed run: first stack frames (or the last lines when
# there is no stack) and the start of the input as hex.
describe_failure() {
	local log=$1 artifact=$2
	local summary frames
	summary=$(grep -m 1 -E '^SUMMARY: |ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|runtime error:' "$log")
	[ -n "$summary" ] && printf '    %s\n' "$summary"
	# the frames of the code under test: not libFuzzer's, the sanitizer's or libc's
	frames=$(grep -E '^ +#[0-9]+ 0x' "$log" |
		grep -v -E ' in (fuzzer::|__sanitizer_|__asan|__ubsan|__interceptor_|__libc_start|_start |main )|libc\.so|\(/lib/' |
		head -n 8)
	if [ -n "$frames" ]; then
		printf '%s\n' "$frames" | sed 's/^ */    /'
	else
		tail -n 8 "$log" | sed 's/^/    | /'
	fi
	if [ -n "$artifact" ] && [ -f "$artifact" ]; then
		printf '    input (%d bytes):\n' "$(stat -c %s "$artifact")"
		od -A x -t x1z -v "$artifact" | head -n 8 | sed 's/^/    /'
	fi
	printf '    full log: %s\n' "$ART/$(basename "$log")"
	cp "$log" "$ART/" 2>/dev/null || true
}

# An artifact libFuzzer wrote for NAME (crash-, leak-, timeout-, oom-...).
find_artifact() {
	local name=$1 f
	for f in "$ART/$name"-*; do
		[ -f "$f" ] || continue
		case "$f" in *.log) continue ;; esac
		printf '%s\n' "$f"
		return 0
	done
	return 1
}

# Replay then fuzz one harness; prints its result block.
run_one() {
	local name=$1 bin=$BUILD/$1
	local dir=$WORK/$name
	local tmp=$SCRATCH/$name corpus=$dir/corpus regress=$dir/regressions
	local log_replay=$dir/$name.replay.log log_fuzz=$dir/$name.fuzz.log
	local max_len dict=() rc artifact
	mkdir -p "$tmp" "$corpus" "$regress"
	# the scratch files of fuzz_config/fuzz_authfile go here, and so away
	export TMPDIR=$tmp
	[ -d "$HERE/corpus/$name" ] && cp -R "$HERE/corpus/$name/." "$corpus/"
	[ -d "$HERE/regressions/$name" ] && cp -R "$HERE/regressions/$name/." "$regress/"
	rm -f "$corpus"/.[!.]* "$regress"/.[!.]* 2>/dev/null
	local ncommitted
	ncommitted=$(find "$corpus" "$regress" -type f | wc -l)
	max_len=$(max_len_for "$name")
	[ -f "$HERE/dict/$name.dict" ] && dict=(-dict="$HERE/dict/$name.dict")

	# 1. every committed input, once
	# (the braces keep bash's "Aborted" notice of a crashed child out of the output)
	{ timeout --kill-after=10 600 "$bin" -runs=0 -timeout=10 -rss_limit_mb="$FUZZ_RSS_MB" \
		-artifact_prefix="$ART/$name-" "$corpus" "$regress" </dev/null >"$log_replay" 2>&1; } 2>/dev/null
	rc=$?
	if [ $rc -ne 0 ]; then
		artifact=$(find_artifact "$name")
		echo "fuzz: FAIL $name: ${artifact:-no artifact (exit $rc)} (replaying the $ncommitted committed inputs)"
		describe_failure "$log_replay" "$artifact"
		return 1
	fi

	# 2. fuzz, time-boxed (the outer timeout only catches a hang of libFuzzer itself)
	{ timeout --kill-after=10 $((FUZZ_SECONDS * 2 + 300)) "$bin" -seed="$FUZZ_SEED" \
		-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb="$FUZZ_RSS_MB" \
		-max_len="$max_len" -print_final_stats=1 -artifact_prefix="$ART/$name-" "${dict[@]}" \
		"$corpus" "$regress" </dev/null >"$log_fuzz" 2>&1; } 2>/dev/null
	rc=$?
	if [ $rc -ne 0 ]; then
		artifact=$(find_artifact "$name")
		if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
			echo "fuzz: FAIL $name: ${artifact:-no artifact} (libFuzzer did not stop in time)"
		else
			echo "fuzz: FAIL $name: ${artifact:-no artifact (exit $rc)}"
		fi
		describe_failure "$log_fuzz" "$artifact"
		return 1
	fi
	local execs ninputs
	execs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log_fuzz" | tail -n 1)
	ninputs=$(find "$corpus" "$regress" -type f | wc -l)
	echo "fuzz: PASS $name (${execs:-0} execs, $ninputs inputs)"
	return 0
}

# Up to FUZZ_JOBS at a time; each result block is printed whole, in the
# order the harnesses finish. A job leaves its exit status in NAME.rc.
RUNNING=()
FAILED=0
reap() {
	local name rc still=()
	for name in "${RUNNING[@]}"; do
		if [ -f "$WORK/$name.rc" ]; then
			rc=$(cat "$WORK/$name.rc")
			[ "$rc" = 0 ] || FAILED=$((FAILED + 1))
			cat "$WORK/$name.result"
		else
			still+=("$name")
		fi
	done
	RUNNING=("${still[@]}")
}
for name in "${HARNESSES[@]}"; do
	while [ ${#RUNNING[@]} -ge "$FUZZ_JOBS" ]; do
		wait -n 2>/dev/null || sleep 1
		reap
	done
	echo "fuzz: starting $name"
	{
		run_one "$name" >"$WORK/$name.result" 2>&1
		echo $? >"$WORK/$name.rc.tmp" && mv "$WORK/$name.rc.tmp" "$WORK/$name.rc"
	} &
	RUNNING+=("$name")
done
while [ ${#RUNNING[@]} -gt 0 ]; do
	wait -n 2>/dev/null || sleep 1
	reap
done

if [ "$FAILED" -ne 0 ]; then
	echo "fuzz: $FAILED of ${#HARNESSES[@]} harnesses failed; artifacts and logs in $ART"
	exit 1
fi
echo "fuzz: all ${#HARNESSES[@]} harnesses passed"
exit 0
