#!/usr/bin/env bash
# Runs the whole Trellis test suite: unit, golden, fuzz seeds, and the
# end-to-end tests (network namespaces and iptables as root; a real
# kube-apiserver + etcd, built once and cached by version).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH

bash scripts/setup.sh
if [[ -x scripts/kubebins.sh ]]; then
  KUBEBINS=$(bash scripts/kubebins.sh) && export TRELLIS_KUBEBINS="$KUBEBINS"
fi

go vet ./...
go test -count=1 -timeout 30m "$@" ./...
