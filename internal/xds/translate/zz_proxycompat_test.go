package translate

import (
	"path/filepath"
	"testing"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	plistener "github.com/trellis-mesh/trellis/internal/proxy/listener"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

type nilRoutes struct{}

func (nilRoutes) Table(string) *httpconn.RouteTable { return nil }

func TestZZProxyCompat(t *testing.T) {
	for _, dir := range caseDirs(t) {
		out := Translate(loadCase(t, dir))
		for _, c := range out.Clusters {
			if _, err := cluster.Compile(c); err != nil {
				t.Logf("%s: cluster: %v", filepath.Base(dir), err)
			}
		}
		for _, r := range out.Routes {
			if _, err := route.Compile(r); err != nil {
				t.Logf("%s: route: %v", filepath.Base(dir), err)
			}
		}
		for _, l := range out.Listeners {
			if _, err := plistener.Compile(l, plistener.Compilers{Routes: nilRoutes{}}); err != nil {
				t.Logf("%s: listener: %v", filepath.Base(dir), err)
			}
		}
	}
}
