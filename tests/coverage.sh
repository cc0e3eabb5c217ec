#!/bin/sh
# gcov line coverage of src/pool and src/net. Not part of CI.
#
# Builds build/coverage (../../configure --enable-coverage: --coverage -O0),
# runs the unit suites (make check) and the integration suite against that
# pgmux (the harness stops pgmux with SIGTERM, so it exits through exit() and
# writes its .gcda files), then prints lines executed per file, and leaves
# the annotated sources in build/coverage/gcov/*.gcov ("#####" = never run).
#
#   tests/coverage.sh                      everything (about 6 minutes on 2 cores)
#   PYTEST_ARGS="tests/integration/test_coverage_paths.py" tests/coverage.sh
#                                          a subset of the integration suite
#   SKIP_TESTS=1 tests/coverage.sh         only the report, from the .gcda files
#                                          the last run left
#   KEEP_GCDA=1 tests/coverage.sh          add to the counts of the last run
#
# Needs only gcc's gcov (no gcovr/lcov). Exits non-zero if a test failed
# (the report is printed anyway).
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B="$ROOT/build/coverage"
JOBS=${JOBS:-2}
PYTEST_ARGS=${PYTEST_ARGS:-tests/integration}
status=0

if [ "${SKIP_TESTS:-0}" != 1 ]; then
	mkdir -p "$B"
	cd "$B" || exit 1
	if [ ! -f Makefile ] || ! grep -q -- '--enable-coverage' config.status 2>/dev/null; then
		(cd "$ROOT" && autoreconf -fi) || exit 1
		../../configure --enable-coverage >configure.out 2>&1 || {
			cat configure.out
			exit 1
		}
	fi
	make -j"$JOBS" >make.out 2>&1 || {
		tail -40 make.out
		exit 1
	}
	if [ "${KEEP_GCDA:-0}" != 1 ]; then
		find . -name '*.gcda' -delete
	fi
	echo "== unit tests (make check)"
	make -j"$JOBS" check >check.out 2>&1 || status=1
	grep -E '^(PASS|FAIL|ERROR|XFAIL|XPASS):' check.out
	grep -h -E '^[0-9]+%: Checks' ./*.log 2>/dev/null | awk '{n+=$3; f+=$5; e+=$7}
		END {printf "Checks: %d, Failures: %d, Errors: %d\n", n, f, e}' | tr -d ,
	echo "== integration tests ($PYTEST_ARGS)"
	cd "$ROOT" || exit 1
	# shellcheck disable=SC2086 # PYTEST_ARGS is a list of arguments
	PGMUX_BIN="$B/pgmux" /usr/bin/python3 -m pytest -q -p no:cacheprovider $PYTEST_ARGS ||
		status=1
fi

cd "$B" || exit 1
rm -rf gcov
mkdir gcov
echo
echo "== gcov line coverage (build/coverage; annotated sources in build/coverage/gcov)"
echo
echo "| file | lines executed | lines |"
echo "| --- | --- | --- |"
for src in "$ROOT"/src/pool/*.c "$ROOT"/src/net/*.c; do
	rel=${src#"$ROOT"/}
	dir=$(dirname "$rel")
	base=$(basename "$rel" .c)
	if [ ! -f "$dir/$base.gcda" ]; then
		if [ -f "$dir/$base.gcno" ]; then
			n=$(gcov -n -o "$dir" "../../$rel" 2>/dev/null |
			    awk -v f="'../../$rel'" '$1 == "File" && $2 == f {g = 1; next}
				g && /^Lines executed/ {split($0, a, " of "); print a[2]; exit}')
			echo "| $rel | 0.00% | ${n:-?} |"
		else
			echo "| $rel | (not built) | |"
		fi
		continue
	fi
	# from the build directory, where the objects were compiled: the .gcov
	# files name the sources relative to it
	gcov -o "$dir" "../../$rel" >gcov/"$base".out 2>&1
	awk -v f="'../../$rel'" '$1 == "File" && $2 == f {g = 1; next}
		g && /^Lines executed/ {sub(/^Lines executed:/, ""); split($0, a, " of ");
			printf "| %s | %s | %s |\n", F, a[1], a[2]; exit}' F="$rel" gcov/"$base".out
	rm -f gcov/"$base".out
	for g in ./*.gcov; do
		[ -f "$g" ] && mv "$g" gcov/
	done
done
exit $status
