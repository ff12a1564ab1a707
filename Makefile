# proctrace-bcc: `make test` runs everything; `sudo make demo` records and renders a demo.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install test lint typecheck unit kernel browser bpf-check demo bench clean

install:
	@scripts/install.sh

lint: install
	$(VENV)/bin/ruff check proctrace_bcc tests bench $(wildcard vm)

typecheck: install
	$(VENV)/bin/mypy

bpf-check: install
	$(PY) -m proctrace_bcc record --backend bcc --print-bpf -- true > /dev/null
	@if command -v bpftrace >/dev/null && [ -f bpf_programs/proctrace.bt ]; then \
	  $(PY) -m proctrace_bcc record --backend bpftrace --print-bpf -- true > /dev/null; fi

unit: install
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
