#!/usr/bin/env bash
# mtls.sh: what mesh mTLS costs through two proxy hops, trellis-proxy against
# HAProxy, plaintext two-hop of both as the baseline, all in one run:
#
#   fortio load -> hop A (outbound) -[mTLS or plain]-> hop B (inbound) -> fortio server
#
# trellis-proxy hops come from bench/proxy-hop.sh (MTLS_CERTS: the sidecar's
# ISTIO_MUTUAL cluster and STRICT inbound chain); HAProxy hop A has
# `server ... ssl crt ... ca-file ... verify required`, hop B
# `bind ... ssl crt ... ca-file ... verify required`, with the same
# certificates (bench/mtls certs: the project's CA, ECDSA P-256 SPIFFE leaves).
# Per topology: p50/p99 at QPS with 16 and 64 keep-alive connections, CPU of
# each hop (utime+stime from /proc/PID/stat), max qps at 16 connections; for
# mTLS also full handshakes/s against hop B (bench/mtls handshake) and RSS per
# idle mTLS connection on hop B (IDLE_CONNS connections held open).
#
#   bash bench/mtls.sh            # from the repository root; ~4 min on 2 cores
#
# Settings: DURATION (10 s per run), QPS (1000), IDLE_CONNS (1000),
# HS_CONC (4 handshaking goroutines), BASE_PORT (18900), TOPOLOGIES
# ("haproxy-plain trellis-plain haproxy-mtls trellis-mtls"), FORTIO (path;
# default: fortio v1.68.2 built once into ~/.cache/trellis, bench/lib.sh).
# Certificates and binaries go to a temp dir (WORK, removed at exit unless
# KEEP=1). Loopback only.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
DURATION=${DURATION:-10} QPS=${QPS:-1000} IDLE_CONNS=${IDLE_CONNS:-1000} HS_CONC=${HS_CONC:-4}
BASE_PORT=${BASE_PORT:-18900}
TOPOLOGIES=${TOPOLOGIES:-haproxy-plain trellis-plain haproxy-mtls trellis-mtls}
WORK=${WORK:-$(mktemp -d /tmp/trellis-mtls.XXXXXX)}
SRV=$((BASE_PORT + 80)) HOPB=$((BASE_PORT + 81)) HOPA=$((BASE_PORT + 82))
pids=()
cleanup() { local p; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"; }
trap cleanup EXIT
log() { printf '[mtls %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v haproxy >/dev/null || { log "haproxy missing: apt-get install haproxy"; exit 1; }
mkdir -p "$WORK/bin" "$WORK/certs"
bench_fortio "$WORK/bin"
log "building trellis-proxy and bench/mtls"
(cd "$root" && CGO_ENABLED=0 go build -tags grpcnotrace -trimpath -ldflags="-s -w" -o "$WORK/bin/trellis-proxy" ./cmd/trellis-proxy &&
  go build -o "$WORK/bin/mtls" ./bench/mtls)
MTLS=$WORK/bin/mtls C=$WORK/certs
"$MTLS" certs "$C"
for w in bench-inbound bench-outbound; do cat "$C/$w.pem" "$C/$w.key" >"$C/$w.haproxy.pem"; done

wait_port() { local i; for i in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

"$FORTIO" server -loglevel warning -http-port "127.0.0.1:$SRV" -grpc-port disabled -redirect-port disabled \
  -tcp-port disabled -udp-port disabled -ui-path "" >"$WORK/fortio-server.log" 2>&1 &
pids+=($!)
wait_port "$SRV"

start_hop() { # topo mode role listen upstream -> sets HOP_PID
  local proxy=$1 mode=$2 role=$3 listen=$4 up=$5 dir=$WORK/run/$1-$2-$3
  mkdir -p "$dir"
  if [[ $proxy == haproxy ]]; then
    haproxy_cfg "$role" "$mode" "$listen" "$up" "$C" >"$dir/haproxy.cfg"
    haproxy -db -f "$dir/haproxy.cfg" >"$dir/log" 2>&1 &
  else
    local m=""; [[ $mode == mtls ]] && m=$C
    MTLS_CERTS=$m TRELLIS_PROXY=$WORK/bin/trellis-proxy GOMAXPROCS=1 \
      bash "$here/proxy-hop.sh" "$dir" "$listen" "$up" "$role" http 1 >"$dir/log" 2>&1 &
  fi
  HOP_PID=$!
  pids+=("$HOP_PID")
  wait_port "${listen##*:}" || { log "$proxy $role did not listen; $dir/log:"; cat "$dir/log" >&2; exit 1; }
}

# load CONNS QPS -> "qps p50_us p99_us cpuA_ms_per_1k cpuB_ms_per_1k errors"
load() {
  local c=$1 q=$2 raw=$WORK/raw-$RANDOM.json a0 b0 a1 b1
  local args=(load -quiet -c "$c" -qps "$q" -t "${DURATION}s" -payload-size 1024 -r 0.00001 -p "50,99" -timeout 5s -json "$raw")
  [[ $q != -1 ]] && args+=(-uniform)
  a0=$(ticks "$PA") b0=$(ticks "$PB")
  "$FORTIO" "${args[@]}" "http://127.0.0.1:$HOPA/echo" >/dev/null 2>&1
  a1=$(ticks "$PA") b1=$(ticks "$PB")
  fortio_row "$raw" "$((a1 - a0))" "$((b1 - b0))"
}

log "load average: $(cut -d' ' -f1-3 /proc/loadavg); topologies: $TOPOLOGIES"
results=$WORK/results.txt
: >"$results"
for t in $TOPOLOGIES; do
  proxy=${t%-*} mode=${t#*-}
  start_hop "$proxy" "$mode" inbound "127.0.0.1:$HOPB" "127.0.0.1:$SRV"; PB=$HOP_PID
  start_hop "$proxy" "$mode" outbound "127.0.0.1:$HOPA" "127.0.0.1:$HOPB"; PA=$HOP_PID
  curl -sf -d ping "http://127.0.0.1:$HOPA/echo" | grep -q ping || { log "$t: end-to-end request failed"; exit 1; }
  if [[ $mode == mtls ]] && curl -sf -m 2 "http://127.0.0.1:$HOPB/echo" >/dev/null 2>&1; then
    log "$t: hop B answered plaintext; it must require mTLS"; exit 1
  fi
  "$FORTIO" load -quiet -c 16 -qps "$QPS" -t 2s -payload-size 1024 "http://127.0.0.1:$HOPA/echo" >/dev/null 2>&1 # warm-up
  l16=$(load 16 "$QPS"); l64=$(load 64 "$QPS"); mx=$(load 16 -1)
  hs=- idle=-
  if [[ $mode == mtls ]]; then
    "$MTLS" handshake -addr "127.0.0.1:$HOPB" -certs "$C" -c "$HS_CONC" -d "${DURATION}s" >"$WORK/hs-$t.json"
    hs=$(jq -r '.per_second | floor' "$WORK/hs-$t.json")
    log "$t handshakes: $(cat "$WORK/hs-$t.json")"
    h0=$(ticks "$PB")
    sleep 1; r0=$(rss_kb "$PB")
    coproc IDLE { "$MTLS" idle -addr "127.0.0.1:$HOPB" -certs "$C" -n "$IDLE_CONNS"; }
    read -r ready _ <&"${IDLE[0]}"
    [[ $ready == ready ]] || { log "$t: idle connections failed"; exit 1; }
    sleep 2; r1=$(rss_kb "$PB")
    idle=$(( (r1 - r0) * 1024 / IDLE_CONNS ))
    exec {IDLE[1]}>&-; wait "$IDLE_PID" || true
  fi
  echo "$t $l16 $l64 $mx $hs $idle $(rss_kb "$PA") $(rss_kb "$PB")" | tee -a "$results" >&2
  kill "$PA" "$PB"; wait "$PA" "$PB" 2>/dev/null || true
  sleep 1
done
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

# Table: one row per topology. cpu = ms of CPU per 1,000 requests per hop
# (= cores per 1,000 rps x 1,000); +p50/+p99 = mTLS minus the same proxy's plaintext.
echo
echo "| topology | qps | p50/p99 @16 (µs) | p50/p99 @64 (µs) | cpu A/B @16 (ms/1k req) | cpu A/B @64 | max qps @16 | cpu A/B @max | handshakes/s (hop B) | RSS/idle mTLS conn (B) | RSS A/B (KiB) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
while read -r t q1 p50a p99a ca1 cb1 e1 q2 p50b p99b ca2 cb2 e2 mq _ _ cam cbm em hs idle ra rb; do
  echo "| $t | $q1 / $q2 | $p50a / $p99a | $p50b / $p99b | $ca1 / $cb1 | $ca2 / $cb2 | $mq | $cam / $cbm | $hs | ${idle} B | $ra / $rb |"
  ((e1 + e2 + em == 0)) || echo "|   errors: $e1 / $e2 / $em | | | | | | | | | | |"
done <"$results"
