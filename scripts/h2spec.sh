#!/usr/bin/env bash
# Prints the path of a pinned h2spec (HTTP/2 conformance tester) for the
# proxy's HTTP/2 conformance test (internal/proxy reads it from
# $TRELLIS_H2SPEC).
#
# Built once from the Go module proxy with scripts/h2spec/go.mod and cached
# in $TRELLIS_H2SPEC_CACHE/h2spec-VERSION/ (default ~/.cache/trellis).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH

VERSION=2.2.1 # github.com/summerwind/h2spec v2.2.1+incompatible
cache_root=${TRELLIS_H2SPEC_CACHE:-$HOME/.cache/trellis}
dir="$cache_root/h2spec-$VERSION"
bin="$dir/h2spec"

if [[ -x "$bin" ]]; then echo "$bin"; exit 0; fi
mkdir -p "$dir"
echo "h2spec: building $VERSION from the module proxy (once per machine)" >&2
( cd scripts/h2spec && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin.tmp" github.com/summerwind/h2spec/cmd/h2spec )
mv "$bin.tmp" "$bin"
echo "$bin"
