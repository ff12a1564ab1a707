# proctrace-bcc: `make test` runs everything; `sudo make demo` records and renders a demo.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install venv test lint typecheck unit kernel browser bpf-check demo bench clean

# Everything: system packages (as root, apt) and the venv (scripts/install.sh).
install:
	@scripts/install.sh

# The venv only (no root, no apt): created from the system python (for Debian's bcc)
# when missing, the package installed editable with its dev tools.
venv: $(VENV)/.proctrace-installed

$(VENV)/.proctrace-installed: pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  if [ -x /usr/bin/python3 ]; then /usr/bin/python3 -m venv --system-site-packages $(VENV); \
	  else python3 -m venv $(VENV); fi; fi
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

lint: venv
	$(VENV)/bin/ruff check proctrace_bcc tests bench $(wildcard vm)

typecheck: venv
	$(VENV)/bin/mypy

# Compile each BPF program variant, load it through the verifier and attach it:
# BCC always, bpftrace when installed (its own --check: compile-only run, then load).
# Needs root; without it this skips with a reason (fails when PROCTRACE_REQUIRE_KERNEL=1).
bpf-check: venv
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "bpf-check: skipped (loading BPF programs needs root)"; \
	  [ "$${PROCTRACE_REQUIRE_KERNEL:-}" != 1 ]; exit; fi; \
	set -e; \
	echo "$(PY) -m proctrace_bcc.backends.bcc --check"; \
	$(PY) -m proctrace_bcc.backends.bcc --check; \
	if command -v bpftrace >/dev/null; then \
	  echo "$(PY) -m proctrace_bcc.backends.bpftrace --check"; \
	  $(PY) -m proctrace_bcc.backends.bpftrace --check; fi

unit: venv
	$(VENV)/bin/pytest -q tests/unit

kernel: install
	$(VENV)/bin/pytest -q -m kernel tests

# The whole suite: lint, types, BPF program checks, every test (unit, kernel, browser).
test: install lint typecheck bpf-check
	$(VENV)/bin/pytest -q tests

demo: install
	@scripts/demo.sh

bench: install
	$(PY) bench/record_bench.py
	$(PY) bench/analyze_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

-include mk/*.mk
