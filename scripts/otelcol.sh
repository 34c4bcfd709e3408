#!/usr/bin/env bash
# Prints the path of a pinned OpenTelemetry Collector (the OTLP receiver
# and the file exporter only) for the tracing tests
# (test/e2e/proxy reads it from $TRELLIS_OTELCOL).
#
# Built once from the Go module proxy with scripts/otelcol/go.mod (a cold
# build takes a few minutes on 2 cores) and cached in
# $TRELLIS_OTELCOL_CACHE/otelcol-VERSION/ (default ~/.cache/trellis).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH

VERSION=0.161.0 # collector v0.161.0 / v1.67.0, contrib fileexporter v0.161.0
cache_root=${TRELLIS_OTELCOL_CACHE:-$HOME/.cache/trellis}
dir="$cache_root/otelcol-$VERSION"
bin="$dir/otelcol-trellis"

if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
mkdir -p "$dir"
echo "otelcol: building the collector $VERSION from the module proxy (once per machine)" >&2
( cd scripts/otelcol && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin.tmp" . )
mv "$bin.tmp" "$bin"
echo "$bin"
