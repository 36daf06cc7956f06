#!/usr/bin/env bash
# Runs every test: static checks, unit tests with the race detector (the
# network-namespace ones need root), the allocation tests without it, then
# the end-to-end tests, which build the weave binary and run real routers in
# simulated hosts.
#
#   scripts/test.sh            everything
#   scripts/test.sh unit       static checks and unit tests only
#   scripts/test.sh e2e        end-to-end tests only
#   scripts/test.sh chaos      the seeded chaos run only (docs/reliability.md)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
scripts/deps.sh

what=${1:-all}
if [[ $what == all || $what == unit ]]; then
	echo "== gofmt"
	bad=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
	if [[ -n $bad ]]; then
		echo "gofmt would change:"; echo "$bad"; exit 1
	fi
	echo "== go vet"
	go vet ./...
	echo "== unit tests (race)"
	go test -race -timeout 10m $(go list ./... | grep -v -e /test/e2e -e /test/chaos)
	# The race detector allocates, so the allocation tests skip under it:
	# run them again without it, in every package that has one. They are
	# the tests whose names contain "Alloc" (TestFastPathAllocs,
	# TestFrameDecodeDoesNotAllocate, ...).
	echo "== allocation tests (no race)"
	alloc_pkgs=$( (git grep -l 'testing.AllocsPerRun' -- '*_test.go' 2>/dev/null ||
		grep -rl --include='*_test.go' 'testing.AllocsPerRun' .) | xargs -n1 dirname | sort -u | sed 's|^\./||; s|^|./|')
	go test -count=1 -timeout 5m -run 'Alloc' $alloc_pkgs
fi
if [[ $what == all || $what == e2e ]]; then
	echo "== end-to-end tests"
	go test -timeout 25m -v ./test/e2e/
fi
if [[ $what == all || $what == chaos ]]; then
	# Seed 1, one fault of each kind on 5 routers: about 90 s. Longer
	# runs and the soak are on demand (CHAOS_SEED, CHAOS_STEPS,
	# CHAOS_DURATION, CHAOS_SOAK, CHAOS_BIG).
	echo "== chaos (seed 1)"
	CHAOS_SEED=1 go test -count=1 -timeout 10m -v -run 'TestChaos$|TestSelectFaults' ./test/chaos/
fi
