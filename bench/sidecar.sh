#!/usr/bin/env bash
# sidecar.sh: the real sidecar data plane against HAProxy, same run, same
# topology. A local mesh (internal/local, what `trellis local up` runs):
# trellisd, and two network namespaces with the interception rules of
# `trellis-proxy iptables` and a trellis-proxy sidecar each, configured by
# trellisd as it configures every sidecar (telemetry, metadata exchange,
# Istio's default retries, auto mTLS between the sidecars):
#
#   client netns (fortio load, `sidecar stream`)         server netns (fortio server, gRPC stream echo)
#   trellis        app -> [iptables] -> sidecar =mTLS=> [iptables] -> sidecar -> app :8080/:8079/:8077
#   haproxy-mtls   app -> 127.0.0.1:28180 HAProxy A =TLS=> HAProxy B :18180 -> app
#   haproxy-plain  app -> 127.0.0.1:28080 HAProxy A ----> HAProxy B :18080 -> app
#   direct         app (uid 1337: not captured) -------> app :8090/:8089/:8087 (same apps, second listeners)
#
# HAProxy runs as uid 1337 in both namespaces (its traffic is not captured,
# as the sidecar's is not) and its hop B ports and the direct ports are
# excluded from inbound capture (excludeInboundPorts). HAProxy's TLS uses
# certificates of the same kind the mesh CA issues (bench/mtls certs:
# ECDSA P-256 SPIFFE leaves, client certificate required).
#
# Measured per topology, interleaved (each test runs every topology before
# the next test), with fortio inside the client namespace (ip netns exec):
#   http, grpc  fortio HTTP/1.1 POST /echo (1 KiB) and gRPC ping (1 KiB),
#               16 and 64 connections, at QPS (1,000) and at max qps:
#               qps, p50/p99, CPU of each proxy in ms per 1,000 requests
#               (= cores per 1,000 rps x 1,000), from /proc/PID/stat
#   stream      one gRPC bidi stream (FullDuplexCall), STREAM_SIZE messages
#               back to back: messages/s, MiB/s; then STREAMS streams on one
#               connection: RSS per stream on each hop (VmRSS during minus
#               before, / STREAMS)
#   big         BIG_CONNS connections POSTing 1 MiB bodies to /echo at max
#               qps: MiB/s each way, RSS per connection on each hop
#
#   bash bench/sidecar.sh     # as root, from anywhere; ~5 min on 2 cores
#
# It builds first, then takes /tmp/trellis-netns.lock (flock) for the part
# that uses namespaces: do not wrap it in flock yourself. Settings:
# DURATION (5 s per run), QPS (1000), CONNS ("16 64"), STREAMS (64),
# STREAM_SIZE (1024), BIG_CONNS (4), TOPOLOGIES ("direct trellis
# haproxy-mtls haproxy-plain"), PREFIX (t80), SUBNET (10.180.0.0/24),
# VIP_SUBNET (10.180.1.0/24), FORTIO (path; default bench/lib.sh's cached
# build), WORK (temp dir, removed unless KEEP=1). Results: the tables on
# stdout, raw rows in $WORK/results.txt, fortio JSON in $WORK/raw/.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
DURATION=${DURATION:-5} QPS=${QPS:-1000} CONNS=${CONNS:-16 64}
STREAMS=${STREAMS:-64} STREAM_SIZE=${STREAM_SIZE:-1024} BIG_CONNS=${BIG_CONNS:-4}
TOPOLOGIES=${TOPOLOGIES:-direct trellis haproxy-mtls haproxy-plain}
PREFIX=${PREFIX:-t80} SUBNET=${SUBNET:-10.180.0.0/24} VIP_SUBNET=${VIP_SUBNET:-10.180.1.0/24}
WORK=${WORK:-$(mktemp -d /tmp/trellis-sidecar.XXXXXX)}
log() { printf '[sidecar %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces, iptables)"
for c in haproxy jq ip setpriv flock; do command -v "$c" >/dev/null || die "$c missing"; done
mkdir -p "$WORK" && chmod 755 "$WORK"
mkdir -p "$WORK/bin" "$WORK/certs" "$WORK/raw" "$WORK/haproxy"
B=$WORK/bin C=$WORK/certs
bench_fortio "$B"
log "building trellis, trellisd, trellis-proxy, bench/sidecar, bench/mtls into $B"
(cd "$root" && CGO_ENABLED=0 go build -tags grpcnotrace -trimpath -ldflags="-s -w" -o "$B/" ./cmd/trellis-proxy &&
  go build -o "$B/" ./cmd/trellis ./cmd/trellisd ./bench/sidecar ./bench/mtls)
chmod 755 "$B"/*
"$B/mtls" certs "$C"
for w in bench-inbound bench-outbound; do cat "$C/$w.pem" "$C/$w.key" >"$C/$w.haproxy.pem"; done
chmod 755 "$C"; chmod 644 "$C"/*

exec 9>/tmp/trellis-netns.lock
log "waiting for /tmp/trellis-netns.lock"
flock 9
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

pids=() UP_PID=
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -n $UP_PID ]]; then kill "$UP_PID" 2>/dev/null || true; wait "$UP_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT

"$B/sidecar" up -bin-dir "$B" -bench "$B/sidecar" -fortio "$FORTIO" -prefix "$PREFIX" -subnet "$SUBNET" \
  -vip-subnet "$VIP_SUBNET" -state-dir "$WORK/mesh" -env "$WORK/mesh.env" >"$WORK/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 1200); do
  [[ -f $WORK/mesh.env ]] && break
  kill -0 "$UP_PID" 2>/dev/null || { cat "$WORK/up.log" >&2; die "the mesh did not come up"; }
  sleep 0.1
done
[[ -f $WORK/mesh.env ]] || { cat "$WORK/up.log" >&2; die "the mesh was not ready in 120 s"; }
# shellcheck source=/dev/null
source "$WORK/mesh.env"   # CLIENT_NS SERVER_NS SERVER_IP *_PROXY_PID ECHO_HOST MESH_LOGS ...
log "mesh up: client $CLIENT_NS, server $SERVER_NS ($SERVER_IP), $ECHO_HOST; sidecars $CLIENT_PROXY_PID, $SERVER_PROXY_PID"

in_ns() { local ns=$1 uid=$2; shift 2; ip netns exec "$ns" setpriv "--reuid=$uid" "--regid=$uid" --clear-groups -- "$@"; }

# HAProxy: hop A in the client namespace, hop B in the server namespace,
# plaintext on ports x0xx and mTLS on x1xx.
hport() { # mode kind -> the hop's port suffix
  local m=0 k
  [[ $1 == mtls ]] && m=1
  case $2 in http) k=80 ;; grpc) k=79 ;; stream) k=77 ;; esac
  echo "$m$k"
}
for mode in plain mtls; do
  for role in outbound inbound; do
    f=$WORK/haproxy/$mode-$role.cfg
    {
      haproxy_global
      for kind in http grpc stream; do
        proto=h2; [[ $kind == http ]] && proto=http
        case $kind in http) app=8080 ;; grpc) app=8079 ;; stream) app=8077 ;; esac
        if [[ $role == outbound ]]; then
          haproxy_pair "$kind" outbound "$mode" "$proto" "127.0.0.1:28$(hport "$mode" "$kind")" "$SERVER_IP:18$(hport "$mode" "$kind")" "$C"
        else
          haproxy_pair "$kind" inbound "$mode" "$proto" ":18$(hport "$mode" "$kind")" "127.0.0.1:$app" "$C"
        fi
      done
    } >"$f"
    ns=$CLIENT_NS; [[ $role == inbound ]] && ns=$SERVER_NS
    in_ns "$ns" 1337 haproxy -db -f "$f" >"$f.log" 2>&1 &
    pids+=($!)
    printf -v "HA_${mode}_${role}" %s "$!"
  done
done
sleep 1
for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { cat "$WORK"/haproxy/*.log >&2; die "an HAProxy hop exited"; }; done

# target TOPO KIND: where the client sends (a URL for http, host:port else).
target() {
  local hp
  case $1 in
    direct) case $2 in http) hp=$SERVER_IP:8090 ;; grpc) hp=$SERVER_IP:8089 ;; stream) hp=$SERVER_IP:8087 ;; esac ;;
    trellis) case $2 in http) hp=$ECHO_HOST:8080 ;; grpc) hp=$ECHO_HOST:8079 ;; stream) hp=$ECHO_HOST:8077 ;; esac ;;
    haproxy-*) hp=127.0.0.1:28$(hport "${1#haproxy-}" "$2") ;;
  esac
  if [[ $2 == http ]]; then echo "http://$hp/echo"; else echo "$hp"; fi
}
# The direct client runs as uid 1337, which the client namespace does not capture.
client_uid() { if [[ $1 == direct ]]; then echo 1337; else echo 65534; fi; }
# hops TOPO: "PID_A PID_B" of the two proxies, "- -" for direct.
hops() {
  case $1 in
    direct) echo "- -" ;;
    trellis) echo "$CLIENT_PROXY_PID $SERVER_PROXY_PID" ;;
    haproxy-plain) echo "$HA_plain_outbound $HA_plain_inbound" ;;
    haproxy-mtls) echo "$HA_mtls_outbound $HA_mtls_inbound" ;;
  esac
}
tick_of() { if [[ $1 == - ]]; then echo -; else ticks "$1"; fi; }
delta() { if [[ $1 == - ]]; then echo -; else echo $(($2 - $1)); fi; }
rss_of() { if [[ $1 == - ]]; then echo 0; else rss_kb "$1"; fi; }

# fortio_run TOPO KIND CONNS QPS [SECONDS [PAYLOAD]] -> fortio_row; raw JSON kept
fortio_run() {
  local t=$1 kind=$2 c=$3 q=$4 d=${5:-$DURATION} size=${6:-1024} pa pb a0 b0 raw
  raw=$WORK/raw/$t-$kind-c$c-q$q-s$size-$RANDOM.json
  read -r pa pb < <(hops "$t")
  local args=(load -quiet -c "$c" -qps "$q" -t "${d}s" -payload-size "$size" -r 0.00001 -p "50,99" -timeout 10s -json -)
  [[ $q != -1 ]] && args+=(-uniform)
  [[ $kind == grpc ]] && args+=(-grpc -ping)
  a0=$(tick_of "$pa") b0=$(tick_of "$pb")
  in_ns "$CLIENT_NS" "$(client_uid "$t")" "$FORTIO" "${args[@]}" "$(target "$t" "$kind")" >"$raw" 2>"$raw.log" ||
    { log "$t $kind c=$c q=$q: fortio failed, $raw.log:"; tail -5 "$raw.log" >&2; echo "0 0 0 - - -1"; return; }
  fortio_row "$raw" "$(delta "$a0" "$(tick_of "$pa")")" "$(delta "$b0" "$(tick_of "$pb")")"
}

# mem_during TOPO N CMD...: runs CMD (its stdout to $MEM_OUT), samples both
# hops' VmRSS before and in the middle of it; sets MEM_A MEM_B (KiB per N).
mem_during() {
  local t=$1 n=$2 pa pb ra rb
  shift 2
  read -r pa pb < <(hops "$t")
  ra=$(rss_of "$pa") rb=$(rss_of "$pb")
  "$@" >"$MEM_OUT" &
  local job=$!
  sleep $((1 + DURATION / 2))
  if [[ $pa == - ]]; then MEM_A=- MEM_B=-; else
    MEM_A=$(( ($(rss_kb "$pa") - ra) / n )) MEM_B=$(( ($(rss_kb "$pb") - rb) / n )); fi
  wait "$job"
}

log "checking every path end to end"
for t in $TOPOLOGIES; do
  [[ $(fortio_run "$t" http 1 100 1 | awk '{ print $6 }') == 0 ]] || die "$t: HTTP/1.1 requests failed ($(target "$t" http))"
  [[ $(fortio_run "$t" grpc 1 100 1 | awk '{ print $6 }') == 0 ]] || die "$t: gRPC pings failed ($(target "$t" grpc))"
  in_ns "$CLIENT_NS" "$(client_uid "$t")" "$B/sidecar" stream -addr "$(target "$t" stream)" -d 1s >"$WORK/raw/check-$t.json" &&
    jq -e '.messages > 0 and .errors == 0' "$WORK/raw/check-$t.json" >/dev/null || die "$t: the gRPC stream failed: $(cat "$WORK/raw/check-$t.json")"
done
if in_ns "$CLIENT_NS" 1337 "$FORTIO" curl -timeout 2s "http://$SERVER_IP:18$(hport mtls http)/echo" >/dev/null 2>&1; then
  die "HAProxy hop B answered plaintext on its mTLS port"
fi

results=$WORK/results.txt
: >"$results"
for kind in http grpc; do
  for c in $CONNS; do
    for q in "$QPS" -1; do
      for t in $TOPOLOGIES; do
        row=$(fortio_run "$t" "$kind" "$c" "$q")
        echo "$kind $c $q $t $row" | tee -a "$results" >&2
      done
    done
  done
done
for t in $TOPOLOGIES; do
  read -r pa pb < <(hops "$t")
  a0=$(tick_of "$pa") b0=$(tick_of "$pb")
  in_ns "$CLIENT_NS" "$(client_uid "$t")" "$B/sidecar" stream -addr "$(target "$t" stream)" -size "$STREAM_SIZE" -d "${DURATION}s" >"$WORK/raw/stream1-$t.json"
  s1=$(jq -r '"\(.messages_per_s | floor) \(.mib_per_s * 10 | round / 10) \(.errors)"' "$WORK/raw/stream1-$t.json")
  n=$(jq -r .messages "$WORK/raw/stream1-$t.json")
  ca=$(delta "$a0" "$(tick_of "$pa")") cb=$(delta "$b0" "$(tick_of "$pb")")
  cpu() { if [[ $1 == - ]]; then echo -; else jq -n --argjson t "$1" --argjson n "$n" --argjson hz "$HZ" '$t / $hz * 1e6 / $n | . * 10 | round / 10'; fi; }
  MEM_OUT=$WORK/raw/streamN-$t.json
  mem_during "$t" "$STREAMS" in_ns "$CLIENT_NS" "$(client_uid "$t")" "$B/sidecar" stream -addr "$(target "$t" stream)" -streams "$STREAMS" -size "$STREAM_SIZE" -d "${DURATION}s"
  sn=$(jq -r '"\(.mib_per_s * 10 | round / 10) \(.errors)"' "$MEM_OUT")
  echo "stream 1 - $t $s1 $(cpu "$ca") $(cpu "$cb") $sn $MEM_A $MEM_B" | tee -a "$results" >&2
done
for t in $TOPOLOGIES; do
  MEM_OUT=$WORK/raw/big-$t.row
  mem_during "$t" "$BIG_CONNS" fortio_run "$t" http "$BIG_CONNS" -1 "$DURATION" 1048576
  echo "big $BIG_CONNS -1 $t $(cat "$MEM_OUT") $MEM_A $MEM_B" | tee -a "$results" >&2
done

# The sidecars really spoke mTLS and exchanged metadata: the server
# sidecar's istio_requests_total carries the client's workload name under
# connection_security_policy="mutual_tls".
metrics=$(in_ns "$SERVER_NS" 1337 "$FORTIO" curl -loglevel error "http://127.0.0.1:15090/stats/prometheus" 2>/dev/null || true)
mtls_ok=no
grep -E '^istio_requests_total\{' <<<"$metrics" | grep 'reporter="destination"' | grep 'connection_security_policy="mutual_tls"' |
  grep -q 'source_workload="client"' && mtls_ok=yes
log "server sidecar: requests over mutual_tls from source_workload=client: $mtls_ok"
[[ $mtls_ok == yes ]] || log "WARNING: the trellis rows may not be mTLS; server sidecar metrics: $(grep -E '^istio_requests_total' <<<"$metrics" | head -3)"
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

# Tables. cpu = ms of CPU per 1,000 requests (= cores per 1,000 rps x 1,000;
# the goal is <= 100 per proxy); +p50/+p99 = the topology's minus direct's
# at the same load.
echo
echo "trellis-proxy sidecars (trellisd config, auto mTLS: $mtls_ok) vs HAProxy, same run, $(date -u +%F), load average at start/end in the log"
for kind in http grpc; do
  echo
  echo "$kind: fixed $QPS qps (p50/p99 µs, +added over direct) and max qps; cpu A/B in ms per 1,000 requests"
  echo "| topology | conns | p50 / p99 @$QPS | +p50 / +p99 | cpu A / B @$QPS | max qps | cpu A / B @max | errors |"
  echo "|---|---|---|---|---|---|---|---|"
  for c in $CONNS; do
    read -r _ _ _ _ _ d50 d99 _ < <(grep "^$kind $c $QPS direct " "$results" || echo "x x x x 0 0 0")
    for t in $TOPOLOGIES; do
      read -r _ _ _ _ _ p50 p99 ca cb e1 < <(grep "^$kind $c $QPS $t " "$results")
      read -r _ _ _ _ mq _ _ ma mb e2 < <(grep "^$kind $c -1 $t " "$results")
      add="-"; [[ $t != direct ]] && add="+$((p50 - d50)) / +$((p99 - d99))"
      echo "| $t | $c | $p50 / $p99 | $add | $ca / $cb | $mq | $ma / $mb | $e1 / $e2 |"
    done
  done
done
echo
echo "gRPC bidi stream (${STREAM_SIZE} B messages): one stream; $STREAMS streams on one connection (RSS KiB per stream, A / B)"
echo "| topology | msgs/s (1 stream) | MiB/s | cpu A / B (ms per 1,000 msgs) | MiB/s ($STREAMS streams) | RSS/stream A / B | errors |"
echo "|---|---|---|---|---|---|---|"
while read -r _ _ _ t m mib e1 ca cb mibn e2 ra rb; do
  echo "| $t | $m | $mib | $ca / $cb | $mibn | $ra / $rb | $e1 / $e2 |"
done < <(grep '^stream ' "$results")
echo
echo "1 MiB POST bodies echoed, $BIG_CONNS connections at max qps (MiB/s each way; RSS KiB per connection, A / B)"
echo "| topology | req/s | MiB/s | p50 / p99 (µs) | cpu A / B (ms per request) | RSS/conn A / B | errors |"
echo "|---|---|---|---|---|---|---|"
while read -r _ _ _ t q p50 p99 ca cb e ra rb; do
  cpa=$ca cpb=$cb
  [[ $ca != - ]] && cpa=$(jq -n "$ca / 1000 * 10 | round / 10") cpb=$(jq -n "$cb / 1000 * 10 | round / 10")
  echo "| $t | $q | $q | $p50 / $p99 | $cpa / $cpb | $ra / $rb | $e |"
done < <(grep '^big ' "$results")
