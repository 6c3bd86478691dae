#!/usr/bin/env bash
# Crash soak: kill -9 the appliance many times while it records (default 200 kills), with the
# same checks as the test suite's 20 (tests/record_crash.rs). Prints per-kill figures.
# Usage: tools/soak-crash.sh [KILLS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export GRIDWATCH_CRASH_KILLS="${1:-${GRIDWATCH_CRASH_KILLS:-200}}"
[ -n "${2:-}" ] && export GRIDWATCH_CRASH_SEED="$2"
exec cargo test --release --locked --test record_crash -- --nocapture
