# libFuzzer harnesses (included by Makefile.am). Built only by `make fuzz`
# in a build configured with --enable-fuzzing and CC=clang; run them with
# tests/fuzz/run.sh BUILD_DIR (README.md there).
#
# One block per harness: add its name to FUZZ_PROGS and give it its
# sources, FUZZ_LIBS and FUZZ_LINK_FLAGS. The same .c is replayed by a Check
# suite in every build (tests/fuzz/replay.mk), so it must also build with
# gcc and without libFuzzer. Its seeds go in tests/fuzz/corpus/<name>/, the
# inputs of crashes it found in tests/fuzz/regressions/<name>/.
if FUZZING
FUZZ_PROGS =
# configure put -fsanitize=fuzzer-no-link,address,undefined in CFLAGS and
# LDFLAGS; the harness programs also link libFuzzer's main
FUZZ_LINK_FLAGS = -fsanitize=fuzzer
FUZZ_LIBS = libpgmux.a $(DEP_LIBS)

FUZZ_PROGS += fuzz_startup
fuzz_startup_SOURCES = tests/fuzz/fuzz_startup.c tests/fuzz/fuzz_common.h
fuzz_startup_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_startup_LDADD = $(FUZZ_LIBS)

FUZZ_PROGS += fuzz_scram_server
fuzz_scram_server_SOURCES = tests/fuzz/fuzz_scram_server.c tests/fuzz/fuzz_common.h
fuzz_scram_server_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_scram_server_LDADD = $(FUZZ_LIBS)

FUZZ_PROGS += fuzz_scram_client
fuzz_scram_client_SOURCES = tests/fuzz/fuzz_scram_client.c tests/fuzz/fuzz_common.h
fuzz_scram_client_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_scram_client_LDADD = $(FUZZ_LIBS)

FUZZ_PROGS += fuzz_sqllex
fuzz_sqllex_SOURCES = tests/fuzz/fuzz_sqllex.c tests/fuzz/fuzz_common.h
fuzz_sqllex_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_sqllex_LDADD = $(FUZZ_LIBS)

FUZZ_PROGS += fuzz_config
fuzz_config_SOURCES = tests/fuzz/fuzz_config.c tests/fuzz/fuzz_common.h
fuzz_config_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_config_LDADD = $(FUZZ_LIBS)

FUZZ_PROGS += fuzz_authfile
fuzz_authfile_SOURCES = tests/fuzz/fuzz_authfile.c tests/fuzz/fuzz_common.h
fuzz_authfile_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_authfile_LDADD = $(FUZZ_LIBS)

FUZZ_PROGS += fuzz_proto
fuzz_proto_SOURCES = tests/fuzz/fuzz_proto.c tests/fuzz/fuzz_common.h
fuzz_proto_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_proto_LDADD = $(FUZZ_LIBS)

FUZZ_PROGS += fuzz_sqlscan
fuzz_sqlscan_SOURCES = tests/fuzz/fuzz_sqlscan.c tests/fuzz/fuzz_common.h
fuzz_sqlscan_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_sqlscan_LDADD = $(FUZZ_LIBS)

# ---- data-path harnesses: the real client/server/pool code on the
# in-process rig (tests/fuzz/rig.c: one worker, a fake backend, socketpair
# clients). The replay suites link the same sources (replay.mk).
FUZZ_RIG_SRCS = tests/fuzz/rig.c tests/fuzz/rig.h tests/fuzz/fuzz_common.h

FUZZ_PROGS += fuzz_client_login
fuzz_client_login_SOURCES = tests/fuzz/fuzz_client_login.c $(FUZZ_RIG_SRCS)
fuzz_client_login_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_client_login_LDADD = $(FUZZ_LIBS)

FUZZ_PROGS += fuzz_client_txn
fuzz_client_txn_SOURCES = tests/fuzz/fuzz_client_txn.c $(FUZZ_RIG_SRCS)
fuzz_client_txn_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_client_txn_LDADD = $(FUZZ_LIBS)

FUZZ_PROGS += fuzz_client_copy
fuzz_client_copy_SOURCES = tests/fuzz/fuzz_client_copy.c $(FUZZ_RIG_SRCS)
fuzz_client_copy_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_client_copy_LDADD = $(FUZZ_LIBS)

FUZZ_PROGS += fuzz_server_stream
fuzz_server_stream_SOURCES = tests/fuzz/fuzz_server_stream.c $(FUZZ_RIG_SRCS)
fuzz_server_stream_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_server_stream_LDADD = $(FUZZ_LIBS)
FUZZ_PROGS += fuzz_tls_negotiation
fuzz_tls_negotiation_SOURCES = tests/fuzz/fuzz_tls_negotiation.c $(FUZZ_RIG_SRCS)
fuzz_tls_negotiation_LDFLAGS = $(FUZZ_LINK_FLAGS)
fuzz_tls_negotiation_LDADD = $(FUZZ_LIBS)
# ---- end of the data-path harnesses

EXTRA_PROGRAMS = $(FUZZ_PROGS)
CLEANFILES = $(FUZZ_PROGS)
fuzz: $(FUZZ_PROGS)
else
fuzz:
	@echo "make fuzz: configure with CC=clang --enable-fuzzing (Debian packages clang libclang-rt-14-dev)" >&2; exit 1
endif
.PHONY: fuzz
