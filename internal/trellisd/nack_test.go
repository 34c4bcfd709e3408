package trellisd

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/trellis-mesh/trellis/internal/xds/server/fakeproxy"
)

// A proxy that rejects a route update: trellisd logs it, /debug/syncz shows
// the NACK with its message against the proxy and type, the NACK metric
// counts it, and the proxy keeps its last good routes.
func TestNACKIsReportedEndToEnd(t *testing.T) {
	dir := t.TempDir()
	writeGreeter(t, dir, 90, 10, "9001", "9002")
	s := startTrellisd(t, Options{ConfigDir: dir})
	var rejecting atomic.Bool
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node := sidecarNode("10.1.1.2", "picky-1")
	c, err := fakeproxy.Dial(ctx, dialADS(t, s.XDSAddr()), node, fakeproxy.Options{KeepResources: true,
		Reject: func(resp *discoveryv3.DeltaDiscoveryResponse) error {
			if rejecting.Load() && resp.GetTypeUrl() == resourcev3.RouteType {
				return errors.New("route 7070: unsupported weighted cluster total")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v1 := "outbound|7070|v1|" + greeterHost
	v2 := "outbound|7070|v2|" + greeterHost
	good := v1 + "=90," + v2 + "=10"
	if err := c.Wait(ctx, func(h fakeproxy.Held) bool { return weights(h, "7070") == good }); err != nil {
		t.Fatal(err)
	}
	rejecting.Store(true)
	writeVS(t, dir, 50, 50)
	eventually(t, func() error {
		var sz SynczResponse
		getJSON(t, "http://"+s.DebugAddr()+"/debug/syncz", &sz)
		for _, p := range sz.Proxies {
			for _, ts := range p.Types {
				if p.ID == node.Id && ts.Type == "RDS" && ts.Nacked() {
					if !strings.Contains(ts.LastNack.Message, "unsupported weighted cluster total") {
						return errorf("RDS NACK message: got %q", ts.LastNack.Message)
					}
					return nil
				}
			}
		}
		return errorf("syncz: no RDS NACK for %s yet", node.Id)
	})
	metrics := string(httpGet(t, "http://"+s.MetricsAddr()+"/metrics"))
	if !strings.Contains(metrics, `trellis_xds_nacks_total{type="rds"} 1`) || !strings.Contains(metrics, `pilot_total_xds_rejects{type="rds"} 1`) {
		t.Errorf("metrics: want trellis_xds_nacks_total and pilot_total_xds_rejects for rds at 1")
	}
	var got string
	c.Wait(ctx, func(h fakeproxy.Held) bool { got = weights(h, "7070"); return true })
	if got != good {
		t.Errorf("routes after NACK: got %s, want the last good %s", got, good)
	}
}
