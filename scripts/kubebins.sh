#!/usr/bin/env bash
# Prints the directory holding kube-apiserver and etcd for the Kubernetes
# tests (internal/kube/kubetest reads it from $TRELLIS_KUBEBINS).
#
# Order: the cache $TRELLIS_KUBEBINS_CACHE/<k8s>_<etcd>/ (default
# ~/.cache/trellis/kubebins); else the prebuilt archive beside the repo
# (../shared/kubebins/*.tar.xz), extracted into the cache; else a build
# from the Go module proxy with scripts/kubebins/go.mod (a cold build takes
# ~10 minutes and ~1.7 GB RAM on 2 cores), cached so it happens once.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH

K8S_VERSION=v1.32.13
ETCD_VERSION=v3.5.16
cache_root=${TRELLIS_KUBEBINS_CACHE:-$HOME/.cache/trellis/kubebins}
dir="$cache_root/${K8S_VERSION#v}_${ETCD_VERSION#v}"

have() { [[ -x "$dir/kube-apiserver" && -x "$dir/etcd" ]]; }

if have; then echo "$dir"; exit 0; fi
mkdir -p "$dir"

archive="../shared/kubebins/kube-apiserver-${K8S_VERSION#v}_etcd-${ETCD_VERSION#v}_linux-amd64.tar.xz"
if [[ -f "$archive" ]]; then
  echo "kubebins: extracting $archive into $dir" >&2
  if tar -xJf "$archive" -C "$dir" && have; then echo "$dir"; exit 0; fi
  echo "kubebins: could not extract both binaries from $archive (is xz installed?); building instead" >&2
fi

echo "kubebins: building kube-apiserver $K8S_VERSION and etcd $ETCD_VERSION from the module proxy (once per machine)" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp scripts/kubebins/go.mod scripts/kubebins/go.sum "$work/"
ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#v1.} \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
( cd "$work" && GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$work/out/" \
    go.etcd.io/etcd/server/v3 k8s.io/kubernetes/cmd/kube-apiserver )
# `go build` names the etcd binary "server" (the element before /v3); older
# toolchains named it "v3".
etcd_bin="$work/out/server"; [[ -x "$etcd_bin" ]] || etcd_bin="$work/out/v3"
mv "$etcd_bin" "$dir/etcd.tmp" && mv "$dir/etcd.tmp" "$dir/etcd"
mv "$work/out/kube-apiserver" "$dir/kube-apiserver.tmp" && mv "$dir/kube-apiserver.tmp" "$dir/kube-apiserver"
have || { echo "kubebins: build did not produce both binaries in $dir" >&2; exit 1; }
echo "$dir"
