#!/usr/bin/env bash
# The web app's browser tests: node's test runner drives Debian's Chromium
# (playwright-core) against a `boxoffice up` of their own (fresh database,
# own Redis key prefix, free port), using the built binary and web/dist.
#   BOXOFFICE_BIN        the binary (default: $CARGO_TARGET_DIR or ../target, debug/boxoffice)
#   WEB_TEST_ARTIFACTS   where screenshots go (default: next to the binary's target, web-screenshots/)
set -euo pipefail
cd "$(dirname "$0")"
target="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}"
export BOXOFFICE_BIN="${BOXOFFICE_BIN:-$target/debug/boxoffice}"
export WEB_TEST_ARTIFACTS="${WEB_TEST_ARTIFACTS:-$target/web-screenshots}"
[ -x "$BOXOFFICE_BIN" ] || { echo "test.sh: no binary at $BOXOFFICE_BIN (cargo build --workspace --bins)" >&2; exit 1; }
[ -f dist/index.html ] || { echo "test.sh: no web/dist (scripts/web build)" >&2; exit 1; }
exec node --test --test-reporter=spec --test-concurrency=1 test/*.test.mjs
