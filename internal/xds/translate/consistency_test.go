package translate

import (
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
)

type validator interface{ ValidateAll() error }

func hcmOf(t testing.TB, f *listenerv3.Filter) *hcmv3.HttpConnectionManager {
	t.Helper()
	if f.GetName() != HTTPConnectionManagerFilter {
		return nil
	}
	h := &hcmv3.HttpConnectionManager{}
	if err := f.GetTypedConfig().UnmarshalTo(h); err != nil {
		t.Fatalf("filter %s: %v", f.GetName(), err)
	}
	return h
}

func tcpProxyOf(t testing.TB, f *listenerv3.Filter) *tcpproxyv3.TcpProxy {
	t.Helper()
	if f.GetName() != TCPProxyFilter {
		return nil
	}
	tp := &tcpproxyv3.TcpProxy{}
	if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
		t.Fatalf("filter %s: %v", f.GetName(), err)
	}
	return tp
}

// checkConsistent is the test oracle every translation must pass: each
// resource passes Envoy's own proto validation; each RDS name a listener
// uses is in Routes; each cluster a route or tcp_proxy names is in
// Clusters; each EDS cluster has an assignment; no two virtual hosts of a
// route configuration share a domain; no two listeners share an address.
func checkConsistent(t *testing.T, out *Output) {
	t.Helper()
	clusters := map[string]bool{}
	for _, c := range out.Clusters {
		clusters[c.GetName()] = true
		if err := c.ValidateAll(); err != nil {
			t.Errorf("cluster %s: %v", c.GetName(), err)
		}
	}
	claNames := map[string]bool{}
	for _, e := range out.Endpoints {
		claNames[e.GetClusterName()] = true
		if err := e.ValidateAll(); err != nil {
			t.Errorf("endpoints %s: %v", e.GetClusterName(), err)
		}
	}
	for _, n := range out.EDSClusterNames() {
		if !claNames[n] {
			t.Errorf("EDS cluster %s has no ClusterLoadAssignment", n)
		}
	}
	routes := map[string]*routev3.RouteConfiguration{}
	for _, r := range out.Routes {
		routes[r.GetName()] = r
		if err := r.ValidateAll(); err != nil {
			t.Errorf("route %s: %v", r.GetName(), err)
		}
	}
	needCluster := func(where, name string) {
		if !clusters[name] {
			t.Errorf("%s: cluster %q is not in the output", where, name)
		}
	}
	checkRC := func(rc *routev3.RouteConfiguration) {
		domains := map[string]string{}
		for _, vh := range rc.GetVirtualHosts() {
			for _, d := range vh.GetDomains() {
				if prev, ok := domains[d]; ok {
					t.Errorf("route %s: domain %q in virtual hosts %s and %s", rc.GetName(), d, prev, vh.GetName())
				}
				domains[d] = vh.GetName()
			}
			for _, r := range vh.GetRoutes() {
				where := "route " + rc.GetName() + "/" + vh.GetName() + "/" + r.GetName()
				a := r.GetRoute()
				if a == nil {
					continue
				}
				if c := a.GetCluster(); c != "" {
					needCluster(where, c)
				}
				for _, wc := range a.GetWeightedClusters().GetClusters() {
					needCluster(where, wc.GetName())
				}
				for _, m := range a.GetRequestMirrorPolicies() {
					needCluster(where, m.GetCluster())
				}
			}
		}
	}
	for _, rc := range out.Routes {
		checkRC(rc)
	}
	addrs := map[string]string{}
	for _, l := range out.Listeners {
		if err := l.ValidateAll(); err != nil {
			t.Errorf("listener %s: %v", l.GetName(), err)
		}
		if l.GetApiListener() != nil {
			h := &hcmv3.HttpConnectionManager{}
			if err := l.GetApiListener().GetApiListener().UnmarshalTo(h); err != nil {
				t.Fatalf("listener %s: %v", l.GetName(), err)
			}
			if rc := routes[h.GetRds().GetRouteConfigName()]; rc == nil {
				t.Errorf("api listener %s: route %q is not in the output", l.GetName(), h.GetRds().GetRouteConfigName())
			}
			continue
		}
		sa := l.GetAddress().GetSocketAddress()
		key := sa.GetAddress() + ":" + u32(sa.GetPortValue())
		if prev, ok := addrs[key]; ok {
			t.Errorf("listeners %s and %s share address %s", prev, l.GetName(), key)
		}
		addrs[key] = l.GetName()
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if h := hcmOf(t, f); h != nil {
					if err := h.ValidateAll(); err != nil {
						t.Errorf("listener %s: hcm: %v", l.GetName(), err)
					}
					if name := h.GetRds().GetRouteConfigName(); name != "" && routes[name] == nil {
						t.Errorf("listener %s: route %q is not in the output", l.GetName(), name)
					}
					if rc := h.GetRouteConfig(); rc != nil {
						checkRC(rc)
					}
				}
				if tp := tcpProxyOf(t, f); tp != nil {
					if c := tp.GetCluster(); c != "" {
						needCluster("listener "+l.GetName(), c)
					}
					for _, wc := range tp.GetWeightedClusters().GetClusters() {
						needCluster("listener "+l.GetName(), wc.GetName())
					}
				}
			}
		}
	}
	for _, s := range out.Secrets {
		if err := s.ValidateAll(); err != nil {
			t.Errorf("secret %s: %v", s.GetName(), err)
		}
	}
}
