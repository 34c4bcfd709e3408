package admin_test

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/admin"
	"github.com/trellis-mesh/trellis/internal/proxy/bootstrap"
	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
)

// Wiring the admin servers the way trellis-proxy does: the bootstrap, the
// cluster manager, stats and telemetry are the proxy's own; XDSDump.Client
// is the running xDS client (nil here: a bootstrap-only proxy).
func Example() {
	bs, _ := bootstrap.FromFlags(bootstrap.Options{NodeID: "sidecar~10.0.0.1~a.default~default.svc.cluster.local"})
	store := stats.NewStore()
	rec := telemetry.NewRecorder(nil)
	clusters := cluster.NewManager(cluster.Options{Stats: store, Interner: rec.Interner})
	defer clusters.Close()
	clusters.AddStatic(bs.GetStaticResources().GetClusters())

	srv, err := admin.New(admin.Options{
		Address:      "127.0.0.1:0", // bootstrap.AdminAddress(bs) in production
		ReadyAddress: "127.0.0.1:0", // admin.DefaultReadyAddress
		ConfigSource: &admin.XDSDump{Bootstrap: bs, Started: time.Now()},
		Clusters:     clusters,
		Stats:        store,
		Telemetry:    rec,
		Ready:        func() bool { return true }, // first config applied and not draining
		Drain:        func(bool) {},               // start draining listeners
		Quit:         func() {},                   // cancel the proxy's context
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()
	resp, err := http.Get("http://" + srv.Addr() + "/ready")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output: 200 LIVE
}
