package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// xdsAcks reads the proxy's /xds page: accepted responses per type URL.
func xdsAcks(t *testing.T, admin string) map[string]uint64 {
	t.Helper()
	var st struct {
		Types []struct {
			TypeURL string `json:"type_url"`
			Acked   uint64 `json:"acked"`
		} `json:"types"`
	}
	if err := json.Unmarshal([]byte(adminGet(admin, "/xds")), &st); err != nil {
		t.Fatalf("/xds: %v", err)
	}
	out := map[string]uint64{}
	for _, ty := range st.Types {
		out[ty.TypeURL] = ty.Acked
	}
	return out
}

const (
	rdsType  = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
	vhdsType = "type.googleapis.com/envoy.config.route.v3.VirtualHost"
)

const vhdsRules = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: flaskapp, namespace: default}
spec:
  host: flaskapp
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flaskapp, namespace: default}
spec:
  hosts: [flaskapp]
  http:
  - route:
    - destination: {host: flaskapp, subset: {{SUBSET}}}
`

// TestVHDSVirtualServiceEdit: a sidecar started with default flags gets route
// "80" without its virtual hosts and the virtual hosts over VHDS from the
// real trellisd; a VirtualService edit reaches it as a virtual host update
// alone (no route configuration resent) and takes effect.
func TestVHDSVirtualServiceEdit(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := versionServer(t, "v1"), versionServer(t, "v2")
	o1, o2 := versionServer(t, "other-v1"), versionServer(t, "other-v2")
	writeConfig(t, dir, "workloads.yaml", workloads("default", "flaskapp", "app", 80, v1, v2), nil)
	writeConfig(t, dir, "other.yaml", workloads("default", "other", "app", 80, o1, o2), nil)
	writeConfig(t, dir, "rules.yaml", vhdsRules, map[string]string{"SUBSET": "v1"})
	td := startTrellisd(t, dir, "")
	local, admin := freePort(t), freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.1", "--pod-name", "sleep-5d8c", "--namespace", "default",
		"--labels", "app=sleep,version=v1", "--admin-address", admin,
		"--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", local, freePort(t), freePort(t)),
		"--drain-duration", "1s")
	waitHTTP(t, local, "flaskapp")
	eventually(t, "flaskapp routed to v1", func() error {
		if got := count(t, local, "flaskapp", 20, nil); got["v1"] != 20 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	if got := count(t, local, "other", 20, nil); got["other-v1"]+got["other-v2"] != 20 {
		t.Errorf("other before the edit: got %v, want 20 answers", got)
	}
	acks := xdsAcks(t, admin)
	vhdsOK, rdsOK := acks[vhdsType], acks[rdsType]
	if vhdsOK == 0 || rdsOK == 0 {
		t.Fatalf("/xds: %d VHDS and %d RDS responses accepted, want both > 0 (route 80 on VHDS)", vhdsOK, rdsOK)
	}
	// The config dump shows route 80 whole, as the router has it.
	if dump := adminGet(admin, "/config_dump"); !strings.Contains(dump, "flaskapp.default.svc.cluster.local:80") || !strings.Contains(dump, "other.default.svc.cluster.local:80") {
		t.Errorf("config_dump: route 80 lacks its virtual hosts:\n%.3000s", dump)
	}

	writeConfig(t, dir, "rules.yaml", vhdsRules, map[string]string{"SUBSET": "v2"})
	eventually(t, "flaskapp routed to v2", func() error {
		if got := count(t, local, "flaskapp", 20, nil); got["v2"] != 20 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	acks = xdsAcks(t, admin)
	if acks[vhdsType] <= vhdsOK {
		t.Errorf("/xds: %d VHDS responses accepted after the edit, want more than %d", acks[vhdsType], vhdsOK)
	}
	if acks[rdsType] != rdsOK {
		t.Errorf("/xds: %d RDS responses accepted after the edit, want %d (route 80 not resent)", acks[rdsType], rdsOK)
	}
	if got := count(t, local, "other", 20, nil); got["other-v1"]+got["other-v2"] != 20 {
		t.Errorf("other after the edit: got %v, want 20 answers", got)
	}
}

const otherVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other, namespace: default}
spec:
  hosts: [other]
  http:
  - name: {{NAME}}
    route:
    - destination: {host: other}
`

// TestVirtualServiceEditsUnderTraffic: while a client sends requests
// through a sidecar with default flags (route "80" over VHDS), the
// VirtualServices of both hosts are edited, created and deleted; every
// request is answered 200 by a backend of its host, none 404 (a virtual
// host missing from the table) or 503 (a route to a cluster not yet there).
func TestVirtualServiceEditsUnderTraffic(t *testing.T) {
	dir := t.TempDir()
	v1, v2 := versionServer(t, "v1"), versionServer(t, "v2")
	o1, o2 := versionServer(t, "other-v1"), versionServer(t, "other-v2")
	writeConfig(t, dir, "workloads.yaml", workloads("default", "flaskapp", "app", 80, v1, v2), nil)
	writeConfig(t, dir, "other.yaml", workloads("default", "other", "app", 80, o1, o2), nil)
	writeConfig(t, dir, "rules.yaml", vhdsRules, map[string]string{"SUBSET": "v1"})
	td := startTrellisd(t, dir, "")
	local, admin := freePort(t), freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.1", "--pod-name", "sleep-5d8c", "--namespace", "default",
		"--labels", "app=sleep,version=v1", "--admin-address", admin,
		"--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", fmt.Sprintf("0.0.0.0:80=%s,0.0.0.0:15001=%s,0.0.0.0:15006=%s", local, freePort(t), freePort(t)),
		"--drain-duration", "1s")
	waitHTTP(t, local, "flaskapp")
	eventually(t, "flaskapp routed to v1", func() error {
		if got := count(t, local, "flaskapp", 10, nil); got["v1"] != 10 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	if acks := xdsAcks(t, admin); acks[vhdsType] == 0 {
		t.Fatalf("/xds: no VHDS response accepted; want route 80 over VHDS by default (%v)", acks)
	}

	// Two clients, one per host, each on its own keep-alive connections.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]map[string]int{}
	latest := map[string]string{}
	for _, host := range []string{"flaskapp", "other"} {
		answers[host] = map[string]int{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+local+"/", nil)
				req.Host = host
				key := ""
				resp, err := c.Do(req)
				if err != nil {
					key = "error: " + err.Error()
				} else {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					key = string(b)
					if resp.StatusCode != 200 {
						key = fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("x-envoy-response-flags"), b)
					}
				}
				mu.Lock()
				answers[host][key]++
				latest[host] = key
				mu.Unlock()
			}
		}()
	}
	served := func(host, want string) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if latest[host] != want {
				return fmt.Errorf("%s: latest answer %q, want %q", host, latest[host], want)
			}
			return nil
		}
	}
	otherVSFile := filepath.Join(dir, "other-vs.yaml")
	for i := 0; i < 6; i++ {
		subset := []string{"v2", "v1"}[i%2]
		writeConfig(t, dir, "rules.yaml", vhdsRules, map[string]string{"SUBSET": subset})
		eventually(t, "flaskapp routed to "+subset, served("flaskapp", subset))
		// other's virtual host changes too: a VirtualService appears,
		// is renamed, and goes.
		switch i % 3 {
		case 0, 1:
			writeConfig(t, dir, "other-vs.yaml", otherVS, map[string]string{"NAME": fmt.Sprintf("r%d", i)})
		case 2:
			if err := os.Remove(otherVSFile); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond) // let requests cross the push
	}
	close(stop)
	wg.Wait()

	total := 0
	for host, got := range answers {
		for k, n := range got {
			total += n
			if k != "v1" && k != "v2" && k != "other-v1" && k != "other-v2" {
				t.Errorf("%s: %d requests answered %q, want every one 200 from a backend of the host", host, n, k)
			}
		}
		if got := answers[host]; len(got) == 0 {
			t.Errorf("%s: no request sent", host)
		}
	}
	t.Logf("%d requests during 6 edits: %v", total, answers)
	acks := xdsAcks(t, admin)
	if acks[vhdsType] < 7 {
		t.Errorf("/xds: %d VHDS responses accepted, want the edits to have come over VHDS (>= 7)", acks[vhdsType])
	}
}
