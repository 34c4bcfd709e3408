package proxy

import (
	"context"
	"fmt"
	"net"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/trace"
)

// newTracers is the proxy's span reporters: one per collector target,
// exporting over connections of the collector's cluster (picked like any
// request's host, with the cluster's TLS origination).
func newTracers(cm *cluster.Manager, logf func(string, ...any)) *trace.Registry {
	r := &trace.Registry{Logf: logf}
	r.Dial = func(ctx context.Context, name string) (net.Conn, error) {
		cl := cm.Get(name)
		if cl == nil {
			return nil, fmt.Errorf("tracing collector cluster %q is unknown", name)
		}
		h, err := cl.Pick(nil)
		if err != nil {
			return nil, fmt.Errorf("tracing collector cluster %q: %w", name, err)
		}
		return cl.DialContext(ctx, h.Address)
	}
	return r
}

// tracingCompiler compiles the HCMs' tracing fields against the proxy's
// reporters and node.
func tracingCompiler(reg *trace.Registry, node *corev3.Node) func(*hcmv3.HttpConnectionManager_Tracing, bool, string) (*trace.Config, error) {
	n := trace.Node{ID: node.GetId(), Cluster: node.GetCluster()}
	return func(t *hcmv3.HttpConnectionManager_Tracing, client bool, path string) (*trace.Config, error) {
		return trace.Compile(t, client, n, reg, path)
	}
}
