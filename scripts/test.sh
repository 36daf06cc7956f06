#!/usr/bin/env bash
# Runs every test: static checks, unit tests with the race detector (the
# network-namespace ones need root), the allocation tests without it (the
# race detector allocates), then the end-to-end tests, which build the
# weave binary and run real routers in simulated hosts.
#
#   scripts/test.sh            everything
#   scripts/test.sh unit       static checks and unit tests only
#   scripts/test.sh e2e        end-to-end tests only
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
	go test -race -timeout 10m $(go list ./... | grep -v /test/e2e)
	echo "== allocation tests (without the race detector, which allocates)"
	go test -count=1 -timeout 5m -run 'Allocs' ./sleeve/... ./dns/...
fi
if [[ $what == all || $what == e2e ]]; then
	echo "== end-to-end tests"
	go test -timeout 25m -v ./test/e2e/
fi
