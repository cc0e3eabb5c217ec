# Check suites for src/pool and src/net (included by Makefile.am inside
# `if HAVE_CHECK`). Each suite: add it to UNIT_TESTS and give it sources,
# CFLAGS and LDADD like the ones in Makefile.am.
