# The bpftrace backend on bpftrace releases other than the installed one
# (docs/backends.md, "bpftrace versions proven").  Included by the top Makefile.
#
#   make bpftrace-fetch    download + unpack the bpftrace of each suite into .cache/bpftrace
#                          (nothing is installed; prints the wrappers' paths)
#   make bpftrace-compat   (root) for each suite: the bpftrace kernel tests, the
#                          cross-backend test and every script variant, with that bpftrace
#
# BPFTRACE_SUITES: Debian suites to take bpftrace from; trixie (stable, 0.23) and forky
# (testing, the newest release) by default.  BPFTRACE_COMPAT_TESTS: pytest -k.

BPFTRACE_SUITES ?= trixie forky
BPFTRACE_COMPAT_TESTS ?= bpftrace or cross_backend
BPFTRACE_FETCH = /usr/bin/python3 vm/bpftrace_fetch.py

.PHONY: bpftrace-fetch bpftrace-compat

bpftrace-fetch:
	@for suite in $(BPFTRACE_SUITES); do $(BPFTRACE_FETCH) --suite $$suite || exit 1; done

bpftrace-compat: install
	@for suite in $(BPFTRACE_SUITES); do \
	  bt=$$($(BPFTRACE_FETCH) --suite $$suite) || exit 1; \
	  echo "bpftrace-compat: $$suite: $$($$bt --version) ($$bt)"; \
	  PROCTRACE_REQUIRE_KERNEL=1 PROCTRACE_TEST_BPFTRACE=$$bt $(VENV)/bin/pytest -q -m kernel \
	    tests/kernel -k "$(BPFTRACE_COMPAT_TESTS)" || exit 1; \
	done
