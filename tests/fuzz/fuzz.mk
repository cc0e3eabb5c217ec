# libFuzzer harnesses (included by Makefile.am). Built only by `make fuzz`
# in a build configured with --enable-fuzzing and CC=clang.
if FUZZING
FUZZ_PROGS =
EXTRA_PROGRAMS = $(FUZZ_PROGS)
fuzz: $(FUZZ_PROGS)
else
fuzz:
	@echo "make fuzz: configure with CC=clang --enable-fuzzing (Debian packages clang libclang-rt-14-dev)" >&2; exit 1
endif
.PHONY: fuzz
