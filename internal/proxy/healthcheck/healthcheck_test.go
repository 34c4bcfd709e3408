package healthcheck

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
)

func TestHTTPCheckThresholds(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var gotPath, gotHost string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotHost = r.URL.Path, r.Host
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	deadAddr := down.Listener.Addr().String()
	down.Close()

	good := &lb.Host{Address: srv.Listener.Addr().String()}
	dead := &lb.Host{Address: deadAddr}
	store := stats.NewStore()
	changes := 0
	c := New("outbound|80||web", Config{Interval: time.Hour, Timeout: 2 * time.Second, UnhealthyThreshold: 2, HealthyThreshold: 2,
		HTTP: &HTTP{Path: "/healthz", Host: "web.local", Expected: []StatusRange{{200, 300}}}},
		NewStats(store.Scope("cluster", "web")), func() { changes++ })
	c.SetHosts([]*lb.Host{good, dead})
	ctx := context.Background()

	if !good.HealthCheckFailed() || !dead.HealthCheckFailed() {
		t.Fatalf("got unchecked hosts healthy, want them failed until a first check passes")
	}
	steps := []struct {
		name     string
		status   int32
		wantGood bool
		wantDead bool
	}{
		{"the first success counts at once", 200, false, true},
		{"the dead host stays failed", 200, false, true},
		{"a 503 once is below the threshold", 503, false, true},
		{"a 503 twice fails the host", 503, true, true},
		{"one success is below the healthy threshold", 204, true, true},
		{"two successes bring it back", 204, false, true},
	}
	for _, s := range steps {
		status.Store(s.status)
		c.CheckAll(ctx)
		if good.HealthCheckFailed() != s.wantGood || dead.HealthCheckFailed() != s.wantDead {
			t.Fatalf("%s: got failed good=%v dead=%v, want %v %v", s.name, good.HealthCheckFailed(), dead.HealthCheckFailed(), s.wantGood, s.wantDead)
		}
	}
	if gotPath != "/healthz" || gotHost != "web.local" {
		t.Errorf("got request %s %s, want /healthz to web.local", gotHost, gotPath)
	}
	if changes != 3 {
		t.Errorf("got %d change callbacks, want 3", changes)
	}
	if got := store.CounterValue("cluster.web.health_check.attempt"); got != 12 {
		t.Errorf("got attempts %d, want 12", got)
	}
	if got := store.CounterValue("cluster.web.health_check.network_failure"); got != 6 {
		t.Errorf("got network failures %d, want 6", got)
	}
	// A new host is checked at once by Run, without waiting an interval.
	fresh := &lb.Host{Address: srv.Listener.Addr().String()}
	status.Store(200)
	ctx2, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { c.Run(ctx2); close(done) }()
	c.SetHosts([]*lb.Host{good, dead, fresh})
	deadline := time.Now().Add(5 * time.Second)
	for fresh.HealthCheckFailed() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if fresh.HealthCheckFailed() {
		t.Errorf("got the new host still unchecked, want it checked at once")
	}
}

func TestTCPCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 4)
				if _, err := conn.Read(buf); err != nil {
					return
				}
				if string(buf) == "PING" {
					conn.Write([]byte("+PONG\r\n"))
				} else {
					conn.Write([]byte("-ERR\r\n"))
				}
			}()
		}
	}()
	tests := []struct {
		name    string
		cfg     *TCP
		wantErr string
	}{
		{"connect only", &TCP{}, ""},
		{"send and receive", &TCP{Send: []byte("PING"), Receive: [][]byte{[]byte("PONG")}}, ""},
		{"wrong reply", &TCP{Send: []byte("PONG"), Receive: [][]byte{[]byte("PONG")}}, "does not contain the expected payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New("tcp", Config{Interval: time.Hour, Timeout: 2 * time.Second, TCP: tt.cfg}, nil, nil)
			err := c.Check(context.Background(), ln.Addr().String())
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRunStops(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	c := New("x", Config{Interval: time.Millisecond, Timeout: time.Second, HTTP: &HTTP{Path: "/"}}, nil, nil)
	c.SetHosts([]*lb.Host{{Address: srv.Listener.Addr().String()}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	cancel()
	<-done
}
