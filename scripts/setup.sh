#!/usr/bin/env bash
# Installs what Trellis's demo and tests need on a fresh Debian machine:
# Go (checked, not installed), iptables and iproute2 for interception,
# prometheus (the traffic-shifting end-to-end test), Chromium, Node.js and
# the dashboard's npm packages (playwright-core drives Chromium in
# test/e2e/dashboard), the kube-apiserver + etcd binaries for the
# Kubernetes tests (scripts/kubebins.sh) and helm for the chart tests
# (scripts/helm.sh; `bash scripts/setup.sh --helm` builds it now).
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH=/usr/local/go/bin:$HOME/go/bin:$PATH
command -v go >/dev/null || { echo "setup: Go is required (https://go.dev/dl); /usr/local/go/bin/go not found" >&2; exit 1; }

need=()
for tool in iptables:iptables ip:iproute2 setpriv:util-linux jq:jq xz:xz-utils curl:curl prometheus:prometheus chromium:chromium node:nodejs npm:npm; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if ((${#need[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The prometheus package (for internal/shift's end-to-end test, which
    # starts its own server) enables a system service; do not leave it running.
    if command -v systemctl >/dev/null && systemctl is-enabled --quiet prometheus 2>/dev/null; then
      systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/prometheus ]]; then
      /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
  else
    echo "setup: missing ${need[*]} (run as root to install them)" >&2
  fi
fi
if [[ "${1:-}" == "--helm" ]]; then
  bash scripts/helm.sh >/dev/null
fi

# The dashboard's front-end packages: playwright-core for the browser test
# (go build needs none of them: the built UI is committed in dist/).
web=internal/dashboard/web
if command -v npm >/dev/null; then
  if [[ ! -d $web/node_modules/playwright-core || $web/package-lock.json -nt $web/node_modules/.package-lock.json ]]; then
    echo "setup: npm ci in $web"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
else
  echo "setup: npm not found; the dashboard's browser test needs it (run as root to install it)" >&2
fi
