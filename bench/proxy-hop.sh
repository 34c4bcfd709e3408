#!/usr/bin/env bash
# proxy-hop.sh: PROXY_CMD wrapper for /work/shared/bench/run.sh.
# It writes a static Envoy bootstrap for one hop into WORKDIR and execs
# trellis-proxy -c on it, so the harness measures the real proxy process.
#
#   PROXY_CMD="$PWD/bench/proxy-hop.sh {workdir} {listen} {upstream} {role} {proto} {workers}"
#
# The hop is configured the way trellisd configures a sidecar: an HTTP
# connection manager (fault, cors, router filters; x-request-id, Istio's
# default retry policy on the outbound hop, no route timeout) routing every
# host to one cluster; the inbound hop reports as the destination side.
# {proto}=grpc makes the cluster HTTP/2 (h2c); the listener auto-detects
# HTTP/1.1 or h2c. TRELLIS_PROXY overrides the binary (default: built next
# to this script in .bin/).
#
# MTLS_CERTS=DIR (certificates written by `go run ./bench/mtls certs DIR`)
# makes the two hops talk mesh mTLS, as trellisd configures sidecars: the
# outbound hop's cluster originates TLS with the workload certificate, ALPN
# istio, SNI outbound_.80_._.bench.bench.svc.cluster.local and the server's
# SPIFFE ID checked against the mesh roots (ISTIO_MUTUAL); the inbound
# listener has a tls_inspector and only the mTLS filter chain (STRICT:
# transport tls, the istio ALPNs, client certificate required and verified).
set -euo pipefail
workdir=$1 listen=$2 upstream=$3 role=${4:-outbound} proto=${5:-http} workers=${6:-1}
here=$(cd "$(dirname "$0")" && pwd)
bin=${TRELLIS_PROXY:-$here/.bin/trellis-proxy}
# Rebuild when the binary is missing or older than any proxy source, so a
# benchmark never measures a stale proxy.
if [[ -z ${TRELLIS_PROXY:-} ]] && { [[ ! -x $bin ]] || [[ -n $(find "$here/../cmd/trellis-proxy" "$here/../internal/proxy" "$here/../internal/iptables" "$here/../internal/envoyext" "$here/../go.mod" -newer "$bin" -print -quit) ]]; }; then
  mkdir -p "$here/.bin"
  (cd "$here/.." && CGO_ENABLED=0 go build -tags grpcnotrace -trimpath -ldflags="-s -w" -o "$bin" ./cmd/trellis-proxy)
fi
lhost=${listen%:*} lport=${listen##*:}
uhost=${upstream%:*} uport=${upstream##*:}
direction=OUTBOUND
[[ $role == inbound ]] && direction=INBOUND
h2=""
if [[ $proto == grpc ]]; then
  h2='
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}'
fi
lfilters="" chainmatch="" downtls="" uptls=""
if [[ -n ${MTLS_CERTS:-} ]]; then
  c=$MTLS_CERTS
  if [[ $role == inbound ]]; then
    lfilters='
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}'
    chainmatch='
      filter_chain_match:
        transport_protocol: tls
        application_protocols: [istio-peer-exchange, istio, istio-http/1.0, istio-http/1.1, istio-h2]'
    downtls="
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            alpn_protocols: [h2, http/1.1]
            tls_certificates:
            - certificate_chain: {filename: $c/bench-inbound.pem}
              private_key: {filename: $c/bench-inbound.key}
            validation_context:
              trusted_ca: {filename: $c/root-cert.pem}"
  else
    uptls="
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: outbound_.80_._.bench.bench.svc.cluster.local
        common_tls_context:
          alpn_protocols: [istio-peer-exchange, istio]
          tls_certificates:
          - certificate_chain: {filename: $c/bench-outbound.pem}
            private_key: {filename: $c/bench-outbound.key}
          validation_context:
            trusted_ca: {filename: $c/root-cert.pem}
            match_typed_subject_alt_names:
            - san_type: URI
              matcher: {exact: spiffe://cluster.local/ns/bench/sa/bench-inbound}"
  fi
fi
retry=""
if [[ $role == outbound ]]; then
  retry='
                  retry_policy:
                    retry_on: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
                    num_retries: 2
                    retriable_status_codes: [503]
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 5'
fi
cat >"$workdir/bootstrap.yaml" <<YAML
node:
  id: sidecar~127.0.0.1~bench-hop${MESHBENCH_HOP:-0}.bench~bench.svc.cluster.local
  cluster: bench.bench
  metadata:
    NAMESPACE: bench
    WORKLOAD_NAME: bench-$role
    LABELS: {app: bench-$role, version: v1}
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 0}
static_resources:
  listeners:
  - name: $role
    traffic_direction: $direction
    address:
      socket_address: {address: $lhost, port_value: $lport}$lfilters
    filter_chains:
    - $downtls$chainmatch
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ${role}_$lport
          codec_type: AUTO
          upgrade_configs: [{upgrade_type: websocket}]
          http_filters:
          - name: envoy.filters.http.fault
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault}
          - name: envoy.filters.http.cors
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            name: "$lport"
            virtual_hosts:
            - name: upstream
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route:
                  cluster: upstream
                  timeout: 0s$retry
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s$h2$uptls
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {address: $uhost, port_value: $uport}
YAML
exec "$bin" -c "$workdir/bootstrap.yaml" --concurrency "$workers" --drain-duration 1s --log-level warning
