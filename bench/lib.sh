# lib.sh: shell pieces shared by the two-hop benchmarks (bench/mtls.sh,
# bench/sidecar.sh). Source it; it defines functions only, plus HZ.
#
#   bench_fortio DIR        sets FORTIO: $FORTIO if set, else fortio
#                           $FORTIO_VERSION (v1.68.2) built once into
#                           ~/.cache/trellis/fortio-VERSION/ and copied into
#                           DIR (so other users can run it)
#   haproxy_global          HAProxy's global and defaults sections
#   haproxy_pair NAME ROLE MODE PROTO LISTEN UPSTREAM CERTS
#                           one frontend/backend pair of a hop: ROLE outbound
#                           (hop A: TLS towards the upstream when MODE=mtls)
#                           or inbound (hop B: TLS on the listener when
#                           MODE=mtls); PROTO http (HTTP/1.1) or h2 (h2c to
#                           the app and client, ALPN h2 over mTLS)
#   haproxy_cfg ROLE MODE LISTEN UPSTREAM CERTS   global + one http pair
#   ticks PID               utime+stime of PID in clock ticks (HZ a second)
#   rss_kb PID / hwm_kb PID VmRSS / VmHWM of PID in KiB
#   fortio_row RAW DA DB    "qps p50_us p99_us cpuA cpuB errors" from fortio
#                           JSON RAW and the hops' tick deltas DA, DB (cpu in
#                           ms of CPU per 1,000 requests; "-" for a delta "-")
HZ=$(getconf CLK_TCK)

bench_fortio() {
  local dir=$1 v=${FORTIO_VERSION:-v1.68.2} cache
  if [[ -z ${FORTIO:-} ]]; then
    # Later fortio releases import grol.io/grol, which the module proxy
    # here refuses: keep the pinned version (see ../shared/bench/README.md).
    cache=${XDG_CACHE_HOME:-$HOME/.cache}/trellis/fortio-$v
    if [[ ! -x $cache/fortio || $("$cache/fortio" version 2>/dev/null) != "${v#v}" ]]; then
      printf '[bench] building fortio %s into %s\n' "$v" "$cache" >&2
      mkdir -p "$cache"
      (cd /tmp && GOBIN=$cache go install "fortio.org/fortio@$v")
    fi
    FORTIO=$cache/fortio
  fi
  mkdir -p "$dir"
  cp "$FORTIO" "$dir/fortio"
  chmod 755 "$dir/fortio"
  FORTIO=$dir/fortio
}

haproxy_global() {
  cat <<CFG
global
  nbthread 1
  maxconn 8000
defaults
  mode http
  option http-keep-alive
  http-reuse safe
  timeout connect 5s
  timeout client 120s
  timeout server 120s
CFG
}

haproxy_pair() {
  local name=$1 role=$2 mode=$3 proto=$4 listen=$5 up=$6 c=$7 bind_opt="" srv_opt=""
  if [[ $mode == mtls && $role == inbound ]]; then
    bind_opt=" ssl crt $c/bench-inbound.haproxy.pem ca-file $c/root-cert.pem verify required"
    [[ $proto == h2 ]] && bind_opt+=" alpn h2"
  elif [[ $proto == h2 ]]; then
    bind_opt=" proto h2"
  fi
  if [[ $mode == mtls && $role == outbound ]]; then
    srv_opt=" ssl crt $c/bench-outbound.haproxy.pem ca-file $c/root-cert.pem verify required"
    [[ $proto == h2 ]] && srv_opt+=" alpn h2"
  elif [[ $proto == h2 ]]; then
    srv_opt=" proto h2"
  fi
  cat <<CFG
frontend fe-$name
  bind $listen$bind_opt
  default_backend be-$name
backend be-$name
  server s1 $up$srv_opt
CFG
}

haproxy_cfg() {
  haproxy_global
  haproxy_pair main "$1" "$2" http "$3" "$4" "$5"
}

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

fortio_row() {
  jq -r --arg a "$2" --arg b "$3" --argjson hz "$HZ" '
    def pct($p): [.DurationHistogram.Percentiles[] | select(.Percentile == $p) | .Value * 1e6] | .[0];
    def cpu($t): if $t == "-" then "-" else ($t | tonumber) / $hz * 1e6 / .DurationHistogram.Count | . * 10 | round / 10 end;
    .DurationHistogram.Count as $n
    | "\(.ActualQPS | floor) \(pct(50) | floor) \(pct(99) | floor) \(cpu($a)) \(cpu($b)) \($n - (.RetCodes["200"] // .RetCodes["SERVING"] // 0))"' "$1"
}
