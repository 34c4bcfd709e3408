#!/usr/bin/env bash
# Runs the whole Trellis test suite: unit, golden, fuzz seeds, and the
# end-to-end tests (network namespaces and iptables as root; a real
# kube-apiserver + etcd and helm, built once and cached by version).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH

bash scripts/setup.sh
if [[ -x scripts/kubebins.sh ]]; then
  KUBEBINS=$(bash scripts/kubebins.sh) && export TRELLIS_KUBEBINS="$KUBEBINS"
fi
# The pinned helm for the chart tests (built once from the module proxy).
HELM=$(bash scripts/helm.sh) && export TRELLIS_HELM="$HELM"
# The pinned OpenTelemetry Collector for the tracing tests (built once).
OTELCOL=$(bash scripts/otelcol.sh) && export TRELLIS_OTELCOL="$OTELCOL"
# The pinned h2spec for the HTTP/2 conformance test (built once).
H2SPEC=$(bash scripts/h2spec.sh) && export TRELLIS_H2SPEC="$H2SPEC"

go vet ./...
go test -count=1 -timeout 30m "$@" ./...
