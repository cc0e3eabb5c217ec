# Check suites that replay the fuzz harnesses' committed inputs
# (tests/fuzz/corpus/<name>/ and tests/fuzz/regressions/<name>/) in every
# build; included by Makefile.am inside `if HAVE_CHECK`. One block per
# harness: the harness .c linked with the driver tests/fuzz/replay.c,
# FUZZ_HARNESS naming it. Each suite is check_<name> (run-all.sh counts the
# check_*.log files).
REPLAY_FLAGS = $(UNIT_CFLAGS) -DFUZZ_DIR=\"$(abs_top_srcdir)/tests/fuzz\"
REPLAY_SRCS = tests/fuzz/replay.c tests/fuzz/fuzz_common.h

UNIT_TESTS += check_fuzz_startup
check_fuzz_startup_SOURCES = $(REPLAY_SRCS) tests/fuzz/fuzz_startup.c
check_fuzz_startup_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_startup\"
check_fuzz_startup_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_scram_server
check_fuzz_scram_server_SOURCES = $(REPLAY_SRCS) tests/fuzz/fuzz_scram_server.c
check_fuzz_scram_server_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_scram_server\"
check_fuzz_scram_server_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_scram_client
check_fuzz_scram_client_SOURCES = $(REPLAY_SRCS) tests/fuzz/fuzz_scram_client.c
check_fuzz_scram_client_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_scram_client\"
check_fuzz_scram_client_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_sqllex
check_fuzz_sqllex_SOURCES = $(REPLAY_SRCS) tests/fuzz/fuzz_sqllex.c
check_fuzz_sqllex_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_sqllex\"
check_fuzz_sqllex_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_config
check_fuzz_config_SOURCES = $(REPLAY_SRCS) tests/fuzz/fuzz_config.c
check_fuzz_config_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_config\"
check_fuzz_config_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_authfile
check_fuzz_authfile_SOURCES = $(REPLAY_SRCS) tests/fuzz/fuzz_authfile.c
check_fuzz_authfile_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_authfile\"
check_fuzz_authfile_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_proto
check_fuzz_proto_SOURCES = $(REPLAY_SRCS) tests/fuzz/fuzz_proto.c
check_fuzz_proto_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_proto\"
check_fuzz_proto_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_sqlscan
check_fuzz_sqlscan_SOURCES = $(REPLAY_SRCS) tests/fuzz/fuzz_sqlscan.c
check_fuzz_sqlscan_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_sqlscan\"
check_fuzz_sqlscan_LDADD = $(UNIT_LDADD)

# ---- data-path harnesses (tests/fuzz/rig.c: pgmux in-process with a fake
# backend); the same sources as their fuzz.mk blocks
REPLAY_RIG_SRCS = tests/fuzz/rig.c tests/fuzz/rig.h

UNIT_TESTS += check_fuzz_client_login
check_fuzz_client_login_SOURCES = $(REPLAY_SRCS) $(REPLAY_RIG_SRCS) tests/fuzz/fuzz_client_login.c
check_fuzz_client_login_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_client_login\"
check_fuzz_client_login_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_client_txn
check_fuzz_client_txn_SOURCES = $(REPLAY_SRCS) $(REPLAY_RIG_SRCS) tests/fuzz/fuzz_client_txn.c
check_fuzz_client_txn_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_client_txn\"
check_fuzz_client_txn_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_client_copy
check_fuzz_client_copy_SOURCES = $(REPLAY_SRCS) $(REPLAY_RIG_SRCS) tests/fuzz/fuzz_client_copy.c
check_fuzz_client_copy_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_client_copy\"
check_fuzz_client_copy_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_server_stream
check_fuzz_server_stream_SOURCES = $(REPLAY_SRCS) $(REPLAY_RIG_SRCS) tests/fuzz/fuzz_server_stream.c
check_fuzz_server_stream_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_server_stream\"
check_fuzz_server_stream_LDADD = $(UNIT_LDADD)

UNIT_TESTS += check_fuzz_tls_negotiation
check_fuzz_tls_negotiation_SOURCES = $(REPLAY_SRCS) $(REPLAY_RIG_SRCS) tests/fuzz/fuzz_tls_negotiation.c
check_fuzz_tls_negotiation_CFLAGS = $(REPLAY_FLAGS) -DFUZZ_HARNESS=\"fuzz_tls_negotiation\"
check_fuzz_tls_negotiation_LDADD = $(UNIT_LDADD)
# ---- end of the data-path harnesses
