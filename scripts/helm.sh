#!/usr/bin/env bash
# Prints the path of the pinned `helm` binary the chart tests run
# (manifests/ and internal/install read it from $TRELLIS_HELM).
#
# Order: $TRELLIS_HELM_CACHE/<version>/helm (default ~/.cache/trellis/helm);
# else a build of helm.sh/helm/v3/cmd/helm at HELM_VERSION from the Go module
# proxy (a cold build takes a few minutes on 2 cores), cached so it happens
# once per machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH

HELM_VERSION=v3.21.4
cache_root=${TRELLIS_HELM_CACHE:-$HOME/.cache/trellis/helm}
dir="$cache_root/${HELM_VERSION#v}"

if [[ -x "$dir/helm" ]]; then echo "$dir/helm"; exit 0; fi
mkdir -p "$dir"

echo "helm: building helm $HELM_VERSION from the module proxy (once per machine)" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
# `go install pkg@version` builds with helm's own go.mod and go.sum, so the
# dependency versions are the release's, checked against the sum database.
GOBIN="$work" GOFLAGS=-mod=mod go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
mv "$work/helm" "$dir/helm.tmp" && mv "$dir/helm.tmp" "$dir/helm"
"$dir/helm" version --short >&2
echo "$dir/helm"
