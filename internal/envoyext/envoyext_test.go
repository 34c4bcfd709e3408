package envoyext

import (
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestContractTypesResolve decodes an Any of each extension type the xDS
// contract names, as protojson does inside a bootstrap or config dump.
func TestContractTypesResolve(t *testing.T) {
	for _, name := range []string{
		"envoy.admin.v3.ConfigDump",
		"envoy.extensions.access_loggers.file.v3.FileAccessLog",
		"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
		"envoy.extensions.filters.http.cors.v3.Cors",
		"envoy.extensions.filters.http.cors.v3.CorsPolicy",
		"envoy.extensions.filters.http.fault.v3.HTTPFault",
		"envoy.extensions.filters.http.router.v3.Router",
		"envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
		"envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
		"envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
		"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
		"envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
		"envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
		"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
		"envoy.extensions.transport_sockets.tls.v3.Secret",
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
		"envoy.service.discovery.v3.DiscoveryResponse",
		"udpa.type.v1.TypedStruct",
	} {
		var a anypb.Any
		if err := protojson.Unmarshal([]byte(`{"@type": "type.googleapis.com/`+name+`"}`), &a); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
