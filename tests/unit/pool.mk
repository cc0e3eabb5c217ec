# Check suites for src/pool and src/net (included by Makefile.am inside
# `if HAVE_CHECK`). Each suite: add it to UNIT_TESTS and give it sources,
# CFLAGS and LDADD like the ones in Makefile.am.

# requests.c: queue order and growth, replies, undo of skipped pipelines,
# statement restore, fake replies
UNIT_TESTS += check_requests
check_requests_SOURCES = tests/unit/check_requests.c
check_requests_CFLAGS = $(UNIT_CFLAGS)
check_requests_LDADD = $(UNIT_LDADD)

# cancel.c: the key table (growth, deletes, lookups under churn) and cancels
# carried out on the client's worker
UNIT_TESTS += check_cancel
check_cancel_SOURCES = tests/unit/check_cancel.c
check_cancel_CFLAGS = $(UNIT_CFLAGS)
check_cancel_LDADD = $(UNIT_LDADD)

# pstmt.c: interning, client and server statement maps, LRU eviction
UNIT_TESTS += check_pstmt
check_pstmt_SOURCES = tests/unit/check_pstmt.c
check_pstmt_CFLAGS = $(UNIT_CFLAGS)
check_pstmt_LDADD = $(UNIT_LDADD)

# route.c, creds.c and the per-state counts: where new servers go, versioned
# credentials and what is derived from them once per version, SHOW POOLS'
# figures
UNIT_TESTS += check_route_creds
check_route_creds_SOURCES = tests/unit/check_route_creds.c
check_route_creds_CFLAGS = $(UNIT_CFLAGS)
check_route_creds_LDADD = $(UNIT_LDADD)
