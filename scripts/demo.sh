#!/usr/bin/env bash
# The demo: three simulated hosts (network namespaces), a weave router on
# each, two containers per host, every container pinging every other.
# Installs what it needs first. Extra arguments go to the demo program
# (--keep to leave it running, --cleanup to remove a kept one).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
scripts/deps.sh >/dev/null
exec go run ./demo "$@"
