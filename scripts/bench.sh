#!/usr/bin/env bash
# The benchmark: weave against the bare underlay and a hand-made kernel
# VXLAN overlay, side by side, in one run. Arguments go to the bench program
# (--duration 10s, --only underlay,vxlan,sleeve, --json).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
scripts/deps.sh --dns >/dev/null
exec go run ./bench "$@"
