package proxy

import (
	"fmt"
	"sort"
	"sync"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	"github.com/trellis-mesh/trellis/internal/proxy/listener"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// routeTables holds the RDS route configurations by name. Connection
// managers keep a pointer to their table, so an RDS update reaches every
// connection at its next request.
type routeTables struct {
	mu     sync.Mutex
	tables map[string]*httpconn.RouteTable
	protos map[string]*routev3.RouteConfiguration
}

// Table implements httpconn.RouteSource.
func (t *routeTables) Table(name string) *httpconn.RouteTable {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tables == nil {
		t.tables = map[string]*httpconn.RouteTable{}
	}
	rt := t.tables[name]
	if rt == nil {
		rt = &httpconn.RouteTable{Name: name}
		t.tables[name] = rt
	}
	return rt
}

// apply compiles every route configuration first, then publishes them all;
// a configuration missing from the set is cleared.
func (t *routeTables) apply(res map[string]*anypb.Any) error {
	compiled := make(map[string]*route.Config, len(res))
	protos := make(map[string]*routev3.RouteConfiguration, len(res))
	for _, name := range sortedNames(res) {
		var rc routev3.RouteConfiguration
		if err := res[name].UnmarshalTo(&rc); err != nil {
			return fmt.Errorf("route configuration %q: decode: %w", name, err)
		}
		c, err := route.Compile(&rc)
		if err != nil {
			return fmt.Errorf("route configuration %q: %w", name, err)
		}
		compiled[name] = c
		protos[name] = &rc
	}
	for name, c := range compiled {
		t.Table(name).Store(c)
	}
	t.mu.Lock()
	for name, rt := range t.tables {
		if _, ok := compiled[name]; !ok {
			rt.Store(nil)
		}
	}
	t.protos = protos
	t.mu.Unlock()
	return nil
}

// Protos returns the current RDS route configurations (for config dumps).
func (t *routeTables) Protos() map[string]*routev3.RouteConfiguration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.protos
}

func sortedNames(m map[string]*anypb.Any) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// compileListeners decodes and compiles LDS resources.
func compileListeners(res map[string]*anypb.Any, cc listener.Compilers) ([]*listener.Listener, error) {
	out := make([]*listener.Listener, 0, len(res))
	for _, name := range sortedNames(res) {
		var l listenerv3.Listener
		if err := res[name].UnmarshalTo(&l); err != nil {
			return nil, fmt.Errorf("listener %q: decode: %w", name, err)
		}
		c, err := listener.Compile(&l, cc)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
