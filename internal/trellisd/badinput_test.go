package trellisd

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/trellis-mesh/trellis/internal/xds/server/fakeproxy"
)

// greeterVS is the greeter VirtualService with a 30/70 split and extra
// lines spliced into its first http route (and hosts after the first).
func greeterVS(extraHosts, routeLines string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: greeter
  namespace: default
spec:
  hosts: [greeter.default.svc.cluster.local` + extraHosts + `]
  http:
  - route:
    - destination:
        host: greeter.default.svc.cluster.local
        subset: v1
      weight: 30
    - destination:
        host: greeter.default.svc.cluster.local
        subset: v2
      weight: 70
` + routeLines
}

// End to end through trellisd's watched config dir: resources that break
// Istio's validation rules (overlapping hosts, retry settings with retries
// off, an unescaped '%' in a header value) are each reported with their
// field path in /debug/configz, nothing is pushed, and the proxy keeps the
// last good routes; a valid edit afterwards is served.
func TestBadInputKeepsLastGoodConfig(t *testing.T) {
	dir := t.TempDir()
	writeGreeter(t, dir, 90, 10, "9001", "9002")
	s := startTrellisd(t, Options{ConfigDir: dir})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := fakeproxy.Dial(ctx, dialADS(t, s.XDSAddr()), sidecarNode("10.1.1.2", "client-2"), fakeproxy.Options{KeepResources: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v1 := "outbound|7070|v1|" + greeterHost
	v2 := "outbound|7070|v2|" + greeterHost
	good := v1 + "=90," + v2 + "=10"
	if err := c.Wait(ctx, func(h fakeproxy.Held) bool { return weights(h, "7070") == good }); err != nil {
		t.Fatalf("initial config: %v (want route 7070 = %s)", err, good)
	}
	goodVersion := c.Version(resourcev3.RouteType)

	bad := []struct {
		name string
		yaml string
		want string // "field: message" as configz reports it
	}{
		{"overlapping hosts", greeterVS(`, "*.default.svc.cluster.local"`, ""),
			`spec.hosts[1]: host "*.default.svc.cluster.local" overlaps hosts[0] "greeter.default.svc.cluster.local"`},
		{"retry settings with retries off", greeterVS("", "    retries: {attempts: 0, perTryTimeout: 2s}\n"),
			"spec.http[0].retries.attempts: 0 turns retries off"},
		{"unescaped percent in a header value", greeterVS("", "    headers:\n      response:\n        set: {x-canary: \"30%\"}\n"),
			"spec.http[0].headers.response.set[x-canary]: header value \"30%\" has an unescaped '%'"},
	}
	vsFile := filepath.Join(dir, "greeter-vs.yaml")
	for _, b := range bad {
		writeAtomic(t, vsFile, b.yaml)
		eventually(t, func() error {
			var cz ConfigzResponse
			getJSON(t, "http://"+s.DebugAddr()+"/debug/configz", &cz)
			for f, errs := range cz.Errors {
				if strings.Contains(f, "greeter-vs.yaml") && strings.Contains(strings.Join(errs, "\n"), b.want) {
					return nil
				}
			}
			return errorf("%s: configz errors: got %v, want greeter-vs.yaml with %q", b.name, cz.Errors, b.want)
		})
		var cz ConfigzResponse
		getJSON(t, "http://"+s.DebugAddr()+"/debug/configz", &cz)
		if !strings.Contains(string(mustJSON(t, cz.Resources)), `"weight":10`) {
			t.Errorf("%s: configz does not serve the last good VirtualService (weight 10)", b.name)
		}
		if got := weights2(t, c); got != good {
			t.Errorf("%s: proxy routes got %s, want the last good %s", b.name, got, good)
		}
		if got := c.Version(resourcev3.RouteType); got != goodVersion {
			t.Errorf("%s: RDS version got %s, want %s (nothing pushed)", b.name, got, goodVersion)
		}
	}

	// A valid edit after the rejections is served.
	writeAtomic(t, vsFile, greeterVS("", ""))
	want := v1 + "=30," + v2 + "=70"
	if err := c.Wait(ctx, func(h fakeproxy.Held) bool { return weights(h, "7070") == want }); err != nil {
		t.Fatalf("after the fix: %v (want route 7070 = %s)", err, want)
	}
	eventually(t, func() error {
		var cz ConfigzResponse
		getJSON(t, "http://"+s.DebugAddr()+"/debug/configz", &cz)
		if len(cz.Errors) != 0 {
			return errorf("configz errors after the fix: got %v, want none", cz.Errors)
		}
		return nil
	})
}
