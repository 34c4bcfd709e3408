package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// redisLike answers "PING\r\n" with "+PONG\r\n" per line, like redis.
func redisLike(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					if strings.TrimSpace(s.Text()) == "PING" {
						io.WriteString(c, "+PONG\r\n")
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestBurstScenario is scenario burst without the rate watcher: the
// ingress *:80 reaches the frontend; from the frontend's sidecar redis is
// plain TCP and the worker is split 50/50 between the subsets primary and
// burst (labelled cluster-type, as in two clusters), then burst.yaml and
// natural.yaml move all of it to one side.
func TestBurstScenario(t *testing.T) {
	dir := t.TempDir()
	frontend := pathServer(t, "frontend")
	primary, burst := pathServer(t, "primary"), pathServer(t, "burst")
	redis := redisLike(t)
	writeConfig(t, dir, "services.yaml", service("default", "frontend-service", frontend, 10)+`---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: worker-service, namespace: default}
spec:
  hosts: [worker-service.default.svc.cluster.local]
  addresses: [240.240.2.2]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: worker}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: worker-primary, namespace: default}
spec:
  address: 127.0.0.1
  ports: {http: `+port(primary)+`}
  labels: {app: worker, cluster-type: primary-cluster}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: worker-burst, namespace: default}
spec:
  address: 127.0.0.1
  ports: {http: `+port(burst)+`}
  labels: {app: worker, cluster-type: burst-cluster}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: redis-cache-service, namespace: default}
spec:
  hosts: [redis-cache-service.default.svc.cluster.local]
  addresses: [240.240.2.3]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 6379, name: tcp-redis, protocol: TCP}]
  workloadSelector: {labels: {app: redis-cache}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: redis-cache, namespace: default}
spec:
  address: 127.0.0.1
  ports: {tcp-redis: `+port(redis)+`}
  labels: {app: redis-cache}
`, nil)
	for _, f := range []string{"frontend-gateway.yaml", "redis-virtualservice.yaml", "worker-virtualservice.yaml"} {
		writeConfig(t, dir, f, scenario(t, "burst/"+f), nil)
	}
	td := startTrellisd(t, dir, "")
	gw := freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--type", "router", "--ip", "127.0.0.1",
		"--pod-name", "istio-ingressgateway-5d8c", "--namespace", "istio-system", "--labels", "istio=ingressgateway",
		"--admin-address", freePort(t), "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", "0.0.0.0:80="+gw, "--drain-duration", "1s")
	workerLocal, redisLocal := freePort(t), freePort(t)
	startProxy(t, "--xds-address", td.XDSAddr(), "--ip", "127.0.0.1", "--pod-name", "frontend-7c9d", "--namespace", "default",
		"--labels", "app=frontend", "--admin-address", freePort(t), "--ready-address", "", "--prometheus-address", "", "--merged-address", "",
		"--rebind", "0.0.0.0:80="+workerLocal+",240.240.2.3:6379="+redisLocal+",0.0.0.0:15001="+freePort(t)+",0.0.0.0:15006="+freePort(t),
		"--drain-duration", "1s")

	c := &http.Client{Timeout: 5 * time.Second}
	eventually(t, "ingress to frontend", func() error {
		req, _ := http.NewRequest("GET", "http://"+gw+"/api", nil)
		req.Host = "burst.example.com"
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "frontend /api" {
			return fmt.Errorf("got %d %q", resp.StatusCode, b)
		}
		return nil
	})

	eventually(t, "redis over TCP", func() error {
		rc, err := net.DialTimeout("tcp", redisLocal, time.Second)
		if err != nil {
			return err
		}
		defer rc.Close()
		rc.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(rc, "PING\r\n")
		line, err := bufio.NewReader(rc).ReadString('\n')
		if line != "+PONG\r\n" {
			return fmt.Errorf("got %q %v", line, err)
		}
		return nil
	})

	split := func(n int) map[string]int {
		got := map[string]int{}
		for i := 0; i < n; i++ {
			req, _ := http.NewRequest("GET", "http://"+workerLocal+"/work", nil)
			req.Host = "worker-service"
			resp, err := c.Do(req)
			if err != nil {
				got["error"]++
				continue
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got[strings.Fields(string(b) + " ?")[0]]++
		}
		return got
	}
	eventually(t, "worker 50/50", func() error {
		if got := split(400); got["primary"] < 160 || got["burst"] < 160 {
			return fmt.Errorf("got %v, want about 200 each", got)
		}
		return nil
	})
	writeConfig(t, dir, "worker-virtualservice.yaml", replaceVS(scenario(t, "burst/worker-virtualservice.yaml"), scenario(t, "burst/burst.yaml")), nil)
	eventually(t, "all to burst", func() error {
		if got := split(50); got["burst"] != 50 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	writeConfig(t, dir, "worker-virtualservice.yaml", replaceVS(scenario(t, "burst/worker-virtualservice.yaml"), scenario(t, "burst/natural.yaml")), nil)
	eventually(t, "all to primary", func() error {
		if got := split(50); got["primary"] != 50 {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
}

// replaceVS swaps the VirtualService document of a multi-document file for
// vs (kubectl apply of a new VirtualService; the DestinationRule stays).
func replaceVS(file, vs string) string {
	docs := strings.Split(file, "\n---\n")
	var out []string
	for _, d := range docs {
		if strings.Contains(d, "kind: VirtualService") {
			continue
		}
		out = append(out, d)
	}
	return vs + "\n---\n" + strings.Join(out, "\n---\n")
}
