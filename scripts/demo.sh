#!/usr/bin/env bash
# Builds Trellis and runs `trellis demo`: the bill-service and canary
# scenarios of the seed documents in a local mesh (network namespaces +
# iptables interception when run as root, explicit proxy ports otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH

bash scripts/setup.sh
mkdir -p bin
go build -tags grpcnotrace -o bin/ ./cmd/trellis ./cmd/trellisd ./cmd/trellis-proxy
exec bin/trellis demo --bin-dir "$PWD/bin" "$@"
