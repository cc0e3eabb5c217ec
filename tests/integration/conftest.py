"""pytest fixtures for the pgmux integration tests.

- pg: one PostgreSQL cluster for the whole session (roles app, app2, md5user;
  database appdb with pgbench tables).
- pgmux: a factory; pgmux(**overrides) starts a pgmux with its own config and
  returns a harness.Pgmux (pgmux(server=other_pg, ...) puts it in front of
  a cluster the test started itself). Every process it started is stopped at teardown,
  which fails the test if pgmux crashed, hung on SIGTERM, reported a
  sanitizer error (named by its first frames) or wrote a password into its
  log.
- mux: a pgmux with the default configuration.
- Every test runs under a wall-clock limit (default 60 s, or
  @pytest.mark.timeout(N)) so that nothing can hang the suite.
"""

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

DEFAULT_TEST_TIMEOUT = 60


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): wall-clock limit for one test")
    config.addinivalue_line("markers", "threads: exercises several workers at once (the TSan "
                            "stage of tests/run-all.sh runs these)")


class TestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    m = item.get_closest_marker("timeout")
    limit = int(m.args[0]) if m else DEFAULT_TEST_TIMEOUT

    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded its %d s limit" % limit)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="session")
def pg():
    server = harness.PgServer()
    try:
        server.start()
        server.setup_roles()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pgmux(pg, tmp_path):
    started = []

    def start(server=None, **overrides):
        """SERVER: a PgServer other than the session's (a test's own)."""
        inst = harness.Pgmux(server or pg, tmp_path / ("pgmux%d" % len(started)), **overrides)
        started.append(inst)
        return inst.start()

    yield start
    problems = []
    for inst in started:
        problems += inst.stop()
    assert not problems, "\n".join(problems)


@pytest.fixture
def mux(pgmux):
    return pgmux()
