package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/failures"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/listener"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
)

// Istio's default ports for the three servers.
const (
	DefaultAddress           = "127.0.0.1:15000"
	DefaultReadyAddress      = "0.0.0.0:15021"
	DefaultPrometheusAddress = "0.0.0.0:15090"
	DefaultMergedAddress     = "0.0.0.0:15020"
)

// Options configure the admin servers. Empty addresses are not served.
type Options struct {
	// Address is the admin API (Istio: 127.0.0.1:15000).
	Address string
	// ReadyAddress serves /healthz/ready (Istio: 0.0.0.0:15021).
	ReadyAddress string
	// PrometheusAddress serves /stats/prometheus (Istio: 0.0.0.0:15090).
	PrometheusAddress string
	// MergedAddress serves pilot-agent's merged endpoint (Istio:
	// 0.0.0.0:15020): /stats/prometheus with the proxy's metrics followed by
	// the application's (AppMetricsURL), and /healthz/ready.
	MergedAddress string
	// AppMetricsURL is the application's Prometheus endpoint on loopback
	// (from the prometheus.io/port and /path annotations), or empty.
	AppMetricsURL string
	// AppProbers is the JSON of ISTIO_KUBE_APP_PROBERS (the injector's
	// rewritten probes); the merged server answers /app-health/C/KIND.
	AppProbers string

	// ConfigSource renders /config_dump and /listeners; nil serves an empty dump.
	ConfigSource ConfigSource
	// Certificates renders /certs (the certificate secrets the proxy
	// holds); may be nil.
	Certificates func() []CertChain
	// Clusters renders /clusters; may be nil.
	Clusters *cluster.Manager
	// Stats and Telemetry render /stats and /stats/prometheus; may be nil.
	Stats     *stats.Store
	Telemetry *telemetry.Recorder
	// Failures renders /debug/failures (the last failed requests); may
	// be nil.
	Failures *failures.Ring
	// Listeners returns the compiled listeners the proxy serves, for
	// /debug/authz and /debug/authz/check; may be nil (both answer 503).
	Listeners func() map[string]*listener.Listener
	// Logging backs /logging; nil creates one with the default loggers.
	Logging *Logging
	// Ready reports whether the first configuration is applied; nil means ready.
	Ready func() bool
	// Drain starts draining listeners (POST /drain_listeners), only the
	// inbound ones with ?inboundonly; may be nil.
	Drain func(inboundOnly bool)
	// Quit shuts the proxy down (POST /quitquitquit); may be nil.
	Quit func()
	// Version is reported by /server_info; NodeID too.
	Version string
	NodeID  string
	// Inherited are listening sockets handed over by the process this one
	// hot-restarts from, by address: a server whose address has one
	// serves on it instead of binding. Nil binds every address.
	Inherited map[string]net.Listener
}

// Server is the running admin, ready and Prometheus endpoints.
type Server struct {
	opts     Options
	started  time.Time
	draining atomic.Bool
	servers  []*http.Server
	addrs    map[string]string
	sockets  map[string]net.Listener // by configured address
	wg       sync.WaitGroup
	uptime   *stats.Gauge
	// Refreshed on every stats read: what an operator watches for a leak.
	goroutines, memAllocated, memHeap, memPhysical *stats.Gauge

	appClient       *http.Client
	appScrapeErrors *stats.Counter
	probes          map[string]*appProbe
}

// New binds the configured addresses and starts serving; Close stops.
func New(opts Options) (*Server, error) {
	if opts.Logging == nil {
		opts.Logging = NewLogging("admin", "config", "connection", "http", "pool", "router", "upstream", "xds", "main")
	}
	if opts.Stats == nil {
		opts.Stats = stats.NewStore()
	}
	probes, err := parseAppProbers(opts.AppProbers)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	s := &Server{opts: opts, started: time.Now(), addrs: map[string]string{}, sockets: map[string]net.Listener{}, probes: probes,
		appClient: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	server := opts.Stats.Scope("server", "")
	s.appScrapeErrors = opts.Stats.Scope("agent", "").Counter("app_metrics_scrape_errors")
	server.Gauge("live").Set(1)
	s.uptime = server.Gauge("uptime")
	s.goroutines = server.Gauge("goroutines")
	s.memAllocated = server.Gauge("memory_allocated")
	s.memHeap = server.Gauge("memory_heap_size")
	s.memPhysical = server.Gauge("memory_physical_size")
	for _, b := range []struct {
		kind, addr string
		mux        http.Handler
	}{
		{"admin", opts.Address, s.adminMux()},
		{"ready", opts.ReadyAddress, s.readyMux()},
		{"prometheus", opts.PrometheusAddress, s.promMux()},
		{"merged", opts.MergedAddress, s.mergedMux()},
	} {
		if b.addr == "" {
			continue
		}
		ln := opts.Inherited[b.addr]
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", b.addr); err != nil {
				s.Close()
				return nil, fmt.Errorf("admin: listen %s (%s): %w", b.addr, b.kind, err)
			}
		}
		s.addrs[b.kind] = ln.Addr().String()
		s.sockets[b.addr] = ln
		hs := &http.Server{Handler: b.mux, ReadHeaderTimeout: 10 * time.Second}
		s.servers = append(s.servers, hs)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			hs.Serve(ln)
		}()
	}
	return s, nil
}

// Addr returns the bound admin address ("" if not served).
func (s *Server) Addr() string { return s.addrs["admin"] }

// ReadyAddr returns the bound /healthz/ready address.
func (s *Server) ReadyAddr() string { return s.addrs["ready"] }

// PrometheusAddr returns the bound Prometheus address.
func (s *Server) PrometheusAddr() string { return s.addrs["prometheus"] }

// MergedAddr returns the bound merged-metrics address.
func (s *Server) MergedAddr() string { return s.addrs["merged"] }

// Close stops every server and waits for them.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var errs []error
	for _, hs := range s.servers {
		if err := hs.Shutdown(ctx); err != nil {
			errs = append(errs, err)
			hs.Close()
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// Sockets returns the listening sockets by configured address (port 0
// binds left out), for a hot restart successor.
func (s *Server) Sockets() map[string]net.Listener {
	out := make(map[string]net.Listener, len(s.sockets))
	for a, ln := range s.sockets {
		if !strings.HasSuffix(a, ":0") {
			out[a] = ln
		}
	}
	return out
}

// StopAccepting closes the servers' listening descriptors (a hot restart
// successor holding its own copies serves the sockets from now on) and
// turns keep-alive off: each connection closes after its next response,
// idle ones at once. (Not http.Server.Shutdown: a server shutting down
// drops, unanswered, a request it reads after the call.)
func (s *Server) StopAccepting() {
	for _, ln := range s.sockets {
		ln.Close()
	}
	for _, hs := range s.servers {
		hs.SetKeepAlivesEnabled(false)
	}
}

// SetDraining marks the proxy as draining (health turns 503).
func (s *Server) SetDraining(v bool) { s.draining.Store(v) }

func (s *Server) ready() bool {
	return s.opts.Ready == nil || s.opts.Ready()
}

type endpoint struct {
	path, help string
	post       bool
	h          http.HandlerFunc
}

func (s *Server) endpoints() []endpoint {
	return []endpoint{
		{"/", "admin home page", false, s.handleHelp},
		{"/help", "print out list of admin commands", false, s.handleHelp},
		{"/config_dump", "dump current Envoy configs (params: resource, include_eds)", false, s.handleConfigDump},
		{"/certs", "print certificates on machine", false, s.handleCerts},
		{"/clusters", "upstream cluster status (param: format=json)", false, s.handleClusters},
		{"/listeners", "print listener info (param: format=json)", false, s.handleListeners},
		{"/stats", "print server stats (params: filter, format=json|prometheus)", false, s.handleStats},
		{"/stats/prometheus", "print server stats in prometheus format", false, s.handlePrometheus},
		{"/ready", "print server state, return 200 if LIVE, otherwise return 503", false, s.handleReady},
		{"/server_info", "print server version/status information", false, s.handleServerInfo},
		{"/memory", "print current allocation/heap usage", false, s.handleMemory},
		{"/logging", "query/change logging levels (params: level, or NAME=LEVEL)", false, s.handleLogging},
		{"/drain_listeners", "drain listeners (params: graceful, inboundonly)", true, s.handleDrain},
		{"/healthcheck/fail", "cause the server to fail health checks", true, func(w http.ResponseWriter, r *http.Request) {
			s.draining.Store(true)
			io.WriteString(w, "OK\n")
		}},
		{"/healthcheck/ok", "cause the server to pass health checks", true, func(w http.ResponseWriter, r *http.Request) {
			s.draining.Store(false)
			io.WriteString(w, "OK\n")
		}},
		{"/xds", "the xDS client's per-type state: version, nonce, last NACK reason, subscriptions (Trellis)", false, s.handleXDS},
		{"/debug/failures", "the last failed requests: status, response flags and details, route, upstream cluster (JSON, Trellis)", false, s.handleFailures},
		{"/debug/authz", "the AuthorizationPolicies a listener's RBAC filters hold (param: listener, default virtualInbound; JSON, Trellis)", false, s.handleAuthzPolicies},
		{"/debug/authz/check", "would a request be allowed, and by which policy and rule: runs it through the live RBAC filters (params: listener, method, path, host, header=NAME:VALUE, principal, namespace, source_ip, destination_ip, port, sni; JSON, Trellis)", false, s.handleAuthzCheck},
		{"/reset_counters", "reset all counters to zero", true, func(w http.ResponseWriter, r *http.Request) {
			s.opts.Stats.ResetCounters()
			io.WriteString(w, "OK\n")
		}},
		{"/quitquitquit", "exit the server", true, s.handleQuit},
	}
}

func (s *Server) handleFailures(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if s.opts.Failures == nil {
		json.NewEncoder(w).Encode(failures.Snapshot{Failures: []failures.Failure{}})
		return
	}
	s.opts.Failures.WriteJSON(w)
}

func (s *Server) adminMux() http.Handler {
	mux := http.NewServeMux()
	for _, e := range s.endpoints() {
		e := e
		mux.HandleFunc(e.path, func(w http.ResponseWriter, r *http.Request) {
			if e.path == "/" && r.URL.Path != "/" {
				http.Error(w, "invalid path: "+r.URL.Path+"\n"+s.helpText(), http.StatusNotFound)
				return
			}
			if e.post && r.Method != http.MethodPost {
				w.Header().Set("Allow", http.MethodPost)
				http.Error(w, "This endpoint requires POST", http.StatusMethodNotAllowed)
				return
			}
			e.h(w, r)
		})
	}
	return mux
}

func (s *Server) readyMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz/ready", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.draining.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case !s.ready():
			http.Error(w, "not ready: waiting for the first configuration from the control plane", http.StatusServiceUnavailable)
		default:
			io.WriteString(w, "")
		}
	})
	return mux
}

func (s *Server) mergedMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/stats/prometheus", s.handleMerged)
	mux.Handle("/healthz/ready", s.readyMux())
	mux.HandleFunc("/app-health/", s.handleAppHealth)
	mux.HandleFunc("/quitquitquit", s.handleAgentQuit)
	return mux
}

// handleAgentQuit is pilot-agent's /quitquitquit on the status port: a
// Job's container (or its wrapper) POSTs it from inside the pod when the
// work is done, and the proxy drains and exits as on SIGTERM. The status
// port listens on every address, so only loopback callers may ask.
func (s *Server) handleAgentQuit(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "This endpoint requires POST", http.StatusMethodNotAllowed)
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		http.Error(w, "only requests from localhost may stop the proxy", http.StatusForbidden)
		return
	}
	s.handleQuit(w, r)
}

// handleMerged writes the proxy's metrics, then the application's. A
// failing application scrape is counted and leaves the proxy's metrics.
func (s *Server) handleMerged(w http.ResponseWriter, r *http.Request) {
	s.handlePrometheus(w, r)
	if s.opts.AppMetricsURL == "" {
		return
	}
	resp, err := s.appClient.Get(s.opts.AppMetricsURL)
	if err != nil {
		s.appScrapeErrors.Inc()
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.appScrapeErrors.Inc()
		return
	}
	io.WriteString(w, "\n")
	io.Copy(w, io.LimitReader(resp.Body, 64<<20))
}

func (s *Server) promMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/stats/prometheus", s.handlePrometheus)
	return mux
}

func (s *Server) helpText() string {
	var b strings.Builder
	b.WriteString("admin commands are:\n")
	for _, e := range s.endpoints()[1:] {
		fmt.Fprintf(&b, "  %s: %s\n", e.path, e.help)
	}
	return b.String()
}

func (s *Server) handleHelp(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	io.WriteString(w, s.helpText())
}

var dumpJSON = protojson.MarshalOptions{Multiline: true, Indent: "  ", UseProtoNames: true}

func writeProtoJSON(w http.ResponseWriter, m proto.Message) {
	b, err := dumpJSON.Marshal(m)
	if err != nil {
		http.Error(w, "render: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
	w.Write([]byte("\n"))
}

func (s *Server) dump() (*adminv3.ConfigDump, error) {
	if s.opts.ConfigSource == nil {
		return &adminv3.ConfigDump{}, nil
	}
	return s.opts.ConfigSource.ConfigDump()
}

func (s *Server) handleConfigDump(w http.ResponseWriter, r *http.Request) {
	d, err := s.dump()
	if err != nil {
		http.Error(w, "config dump: "+err.Error(), http.StatusInternalServerError)
		return
	}
	// Envoy leaves endpoints out unless ?include_eds; Trellis always
	// includes them (the dumps are small and proxy-config wants them).
	q := r.URL.Query()
	if res := q.Get("resource"); res != "" {
		d, err = filterResource(d, res)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	writeProtoJSON(w, d)
}

// filterResource returns only the named repeated field of the dumps
// (e.g. dynamic_active_clusters), each element as its own config.
func filterResource(d *adminv3.ConfigDump, field string) (*adminv3.ConfigDump, error) {
	out := &adminv3.ConfigDump{}
	found := false
	for _, a := range d.GetConfigs() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return nil, err
		}
		fd := m.ProtoReflect().Descriptor().Fields().ByName(protoName(field))
		if fd == nil || !fd.IsList() || fd.Message() == nil {
			continue
		}
		found = true
		list := m.ProtoReflect().Get(fd).List()
		for i := 0; i < list.Len(); i++ {
			e, err := anyOf(list.Get(i).Message().Interface())
			if err != nil {
				return nil, err
			}
			out.Configs = append(out.Configs, e)
		}
	}
	if !found {
		return nil, fmt.Errorf("resource=%s: no repeated message field of that name in the config dump (try dynamic_active_clusters, dynamic_listeners, dynamic_route_configs, dynamic_endpoint_configs, static_clusters)", field)
	}
	return out, nil
}

func (s *Server) handleClusters(w http.ResponseWriter, r *http.Request) {
	var all []*cluster.Cluster
	m := s.opts.Clusters
	if m != nil {
		all = m.All()
	}
	if r.URL.Query().Get("format") == "json" {
		out := &adminv3.Clusters{}
		for _, c := range all {
			cs := &adminv3.ClusterStatus{Name: c.Name, AddedViaApi: !m.IsStatic(c.Name), ObservabilityName: c.Name, EdsServiceName: c.EDSServiceName}
			for _, h := range sortedHosts(c.Hosts()) {
				cs.HostStatuses = append(cs.HostStatuses, hostStatus(h))
			}
			out.ClusterStatuses = append(out.ClusterStatuses, cs)
		}
		writeProtoJSON(w, out)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	var b strings.Builder
	for _, c := range all {
		n := c.Name
		fmt.Fprintf(&b, "%s::observability_name::%s\n", n, n)
		fmt.Fprintf(&b, "%s::default_priority::max_connections::%d\n", n, c.Breakers.MaxConnections)
		fmt.Fprintf(&b, "%s::default_priority::max_pending_requests::%d\n", n, c.Breakers.MaxPendingRequests)
		fmt.Fprintf(&b, "%s::default_priority::max_requests::%d\n", n, c.Breakers.MaxRequests)
		fmt.Fprintf(&b, "%s::default_priority::max_retries::%d\n", n, c.Breakers.MaxRetries)
		fmt.Fprintf(&b, "%s::added_via_api::%v\n", n, m != nil && !m.IsStatic(n))
		for _, h := range sortedHosts(c.Hosts()) {
			p := n + "::" + h.Address + "::"
			fmt.Fprintf(&b, "%scx_active::%d\n", p, h.CxActive.Load())
			fmt.Fprintf(&b, "%scx_connect_fail::%d\n", p, h.CxFailed.Load())
			fmt.Fprintf(&b, "%scx_total::%d\n", p, h.CxTotal.Load())
			fmt.Fprintf(&b, "%srq_active::%d\n", p, h.ActiveRequests())
			fmt.Fprintf(&b, "%srq_error::%d\n", p, h.RqError.Load())
			fmt.Fprintf(&b, "%srq_success::%d\n", p, h.RqSuccess.Load())
			fmt.Fprintf(&b, "%srq_timeout::%d\n", p, h.RqTimeout.Load())
			fmt.Fprintf(&b, "%srq_total::%d\n", p, h.RqTotal.Load())
			fmt.Fprintf(&b, "%shostname::\n", p)
			fmt.Fprintf(&b, "%shealth_flags::%s\n", p, h.HealthFlags())
			fmt.Fprintf(&b, "%sweight::%d\n", p, max(h.Weight, 1))
			fmt.Fprintf(&b, "%sregion::%s\n", p, h.Locality.Region)
			fmt.Fprintf(&b, "%szone::%s\n", p, h.Locality.Zone)
			fmt.Fprintf(&b, "%ssub_zone::%s\n", p, h.Locality.SubZone)
			fmt.Fprintf(&b, "%scanary::false\n", p)
			fmt.Fprintf(&b, "%spriority::%d\n", p, h.Priority)
			fmt.Fprintf(&b, "%ssuccess_rate::-1\n", p)
			fmt.Fprintf(&b, "%slocal_origin_success_rate::-1\n", p)
		}
	}
	io.WriteString(w, b.String())
}

func sortedHosts(hs []*lb.Host) []*lb.Host {
	out := append([]*lb.Host(nil), hs...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority < out[j].Priority
		}
		return out[i].Address < out[j].Address
	})
	return out
}

func hostStatus(h *lb.Host) *adminv3.HostStatus {
	host, port, _ := net.SplitHostPort(h.Address)
	p, _ := strconv.Atoi(port)
	counter := func(name string, v uint64) *adminv3.SimpleMetric {
		return &adminv3.SimpleMetric{Name: name, Value: v, Type: adminv3.SimpleMetric_COUNTER}
	}
	gauge := func(name string, v int64) *adminv3.SimpleMetric {
		return &adminv3.SimpleMetric{Name: name, Value: uint64(max(v, 0)), Type: adminv3.SimpleMetric_GAUGE}
	}
	return &adminv3.HostStatus{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}},
		Stats: []*adminv3.SimpleMetric{
			counter("cx_connect_fail", h.CxFailed.Load()), counter("cx_total", h.CxTotal.Load()),
			counter("rq_error", h.RqError.Load()), counter("rq_success", h.RqSuccess.Load()),
			counter("rq_timeout", h.RqTimeout.Load()), counter("rq_total", h.RqTotal.Load()),
			gauge("cx_active", h.CxActive.Load()), gauge("rq_active", h.ActiveRequests()),
		},
		HealthStatus: &adminv3.HostHealthStatus{
			FailedActiveHealthCheck: h.HealthCheckFailed(),
			FailedOutlierCheck:      h.Ejected(),
			EdsHealthStatus:         edsHealth(h.EDSHealth),
		},
		Weight:   max(h.Weight, 1),
		Priority: h.Priority,
		Locality: &corev3.Locality{Region: h.Locality.Region, Zone: h.Locality.Zone, SubZone: h.Locality.SubZone},
	}
}

// edsHealth reports UNKNOWN (no EDS verdict) as HEALTHY, as Envoy does.
func edsHealth(s lb.HealthStatus) corev3.HealthStatus {
	if s == lb.HealthUnknown {
		return corev3.HealthStatus_HEALTHY
	}
	return corev3.HealthStatus(s)
}

func (s *Server) handleListeners(w http.ResponseWriter, r *http.Request) {
	d, err := s.dump()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	out := &adminv3.Listeners{}
	for _, a := range d.GetConfigs() {
		var ld adminv3.ListenersConfigDump
		if a.UnmarshalTo(&ld) != nil {
			continue
		}
		var anys []*listenerv3.Listener
		for _, sl := range ld.GetStaticListeners() {
			var l listenerv3.Listener
			if sl.GetListener().UnmarshalTo(&l) == nil {
				anys = append(anys, &l)
			}
		}
		for _, dl := range ld.GetDynamicListeners() {
			var l listenerv3.Listener
			if dl.GetActiveState().GetListener().UnmarshalTo(&l) == nil {
				anys = append(anys, &l)
			}
		}
		for _, l := range anys {
			out.ListenerStatuses = append(out.ListenerStatuses, &adminv3.ListenerStatus{Name: l.GetName(), LocalAddress: l.GetAddress()})
		}
	}
	if r.URL.Query().Get("format") == "json" {
		writeProtoJSON(w, out)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	for _, l := range out.ListenerStatuses {
		sa := l.GetLocalAddress().GetSocketAddress()
		fmt.Fprintf(w, "%s::%s\n", l.GetName(), net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
	}
}

// refreshServerStats sets the server.* gauges read at scrape time: Envoy's
// uptime and memory_* (heap in use, heap reserved, all memory from the OS)
// and server.goroutines, which Envoy has no counterpart for.
func (s *Server) refreshServerStats() {
	s.uptime.Set(int64(time.Since(s.started).Seconds()))
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.memAllocated.Set(int64(ms.HeapAlloc))
	s.memHeap.Set(int64(ms.HeapSys))
	s.memPhysical.Set(int64(ms.Sys))
	s.goroutines.Set(int64(runtime.NumGoroutine()))
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	s.refreshServerStats()
	q := r.URL.Query()
	if q.Get("format") == "prometheus" {
		s.handlePrometheus(w, r)
		return
	}
	var filter func(string) bool
	if f := q.Get("filter"); f != "" {
		re, err := regexp.Compile(f)
		if err != nil {
			http.Error(w, fmt.Sprintf("filter: invalid regex %q: %v", f, err), http.StatusBadRequest)
			return
		}
		filter = re.MatchString
	}
	if q.Has("usedonly") {
		prev := filter
		filter = func(n string) bool {
			st := s.opts.Stats.Get(n)
			used := st != nil && (st.Counter != nil && st.Counter.Value() > 0 || st.Gauge != nil && st.Gauge.Value() != 0 ||
				st.Histogram != nil && st.Histogram.Snapshot().Count > 0)
			return used && (prev == nil || prev(n))
		}
	}
	if q.Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"stats":[`)
		first := true
		for _, st := range s.opts.Stats.Each() {
			if filter != nil && !filter(st.Name) || st.Kind == stats.KindHistogram {
				continue
			}
			if !first {
				fmt.Fprint(w, ",")
			}
			first = false
			var v string
			if st.Counter != nil {
				v = strconv.FormatUint(st.Counter.Value(), 10)
			} else {
				v = strconv.FormatInt(st.Gauge.Value(), 10)
			}
			fmt.Fprintf(w, `{"name":%q,"value":%s}`, st.Name, v)
		}
		fmt.Fprint(w, "]}\n")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	s.opts.Stats.WriteText(w, filter)
}

func (s *Server) handlePrometheus(w http.ResponseWriter, r *http.Request) {
	s.refreshServerStats()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if s.opts.Telemetry != nil {
		if err := s.opts.Telemetry.WritePrometheus(w); err != nil {
			return
		}
	}
	s.opts.Stats.WritePrometheus(w)
}

func (s *Server) state() adminv3.ServerInfo_State {
	switch {
	case s.draining.Load():
		return adminv3.ServerInfo_DRAINING
	case !s.ready():
		return adminv3.ServerInfo_PRE_INITIALIZING
	}
	return adminv3.ServerInfo_LIVE
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	st := s.state()
	if st != adminv3.ServerInfo_LIVE {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	io.WriteString(w, st.String()+"\n")
}

func (s *Server) handleServerInfo(w http.ResponseWriter, r *http.Request) {
	up := time.Since(s.started)
	writeProtoJSON(w, &adminv3.ServerInfo{
		Version:            s.opts.Version,
		State:              s.state(),
		UptimeCurrentEpoch: durationpb.New(up.Truncate(time.Second)),
		UptimeAllEpochs:    durationpb.New(up.Truncate(time.Second)),
		CommandLineOptions: &adminv3.CommandLineOptions{ServiceNode: s.opts.NodeID},
	})
}

func (s *Server) handleMemory(w http.ResponseWriter, r *http.Request) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	writeProtoJSON(w, &adminv3.Memory{
		Allocated:          ms.HeapAlloc,
		HeapSize:           ms.HeapSys,
		PageheapUnmapped:   ms.HeapReleased,
		PageheapFree:       ms.HeapIdle - ms.HeapReleased,
		TotalPhysicalBytes: ms.Sys,
	})
}

func (s *Server) handleLogging(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if len(q) > 0 {
		if r.Method != http.MethodPost {
			http.Error(w, "This endpoint requires POST to change levels", http.StatusMethodNotAllowed)
			return
		}
		for k, vs := range q {
			lv, err := ParseLevel(vs[0])
			if err != nil {
				http.Error(w, err.Error()+"\n"+s.opts.Logging.String(), http.StatusBadRequest)
				return
			}
			if k == "level" {
				s.opts.Logging.SetAll(lv)
			} else if err := s.opts.Logging.Set(k, lv); err != nil {
				http.Error(w, err.Error()+"\n"+s.opts.Logging.String(), http.StatusBadRequest)
				return
			}
		}
	}
	io.WriteString(w, s.opts.Logging.String())
}

// handleXDS renders the xDS client's state as JSON.
func (s *Server) handleXDS(w http.ResponseWriter, r *http.Request) {
	d, ok := s.opts.ConfigSource.(*XDSDump)
	if !ok || d.Client == nil {
		http.Error(w, "this proxy has no xDS client", http.StatusNotFound)
		return
	}
	type typeState struct {
		TypeURL     string   `json:"type_url"`
		Version     string   `json:"version_info"`
		Nonce       string   `json:"nonce"`
		LastError   string   `json:"last_error,omitempty"`
		LastUpdated string   `json:"last_updated,omitempty"`
		Subscribed  []string `json:"subscribed,omitempty"`
		Acked       uint64   `json:"acked"`
		Nacked      uint64   `json:"nacked"`
	}
	out := struct {
		Connected bool        `json:"connected"`
		Types     []typeState `json:"types"`
	}{Connected: d.Client.Connected()}
	for _, st := range d.Client.Status() {
		ts := typeState{TypeURL: st.TypeURL, Version: st.Version, Nonce: st.Nonce, LastError: st.LastError,
			Subscribed: st.Subscribed, Acked: st.Acked, Nacked: st.Nacked}
		if !st.LastUpdated.IsZero() {
			ts.LastUpdated = st.LastUpdated.UTC().Format(time.RFC3339Nano)
		}
		out.Types = append(out.Types, ts)
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

func (s *Server) handleDrain(w http.ResponseWriter, r *http.Request) {
	s.draining.Store(true)
	if s.opts.Drain != nil {
		s.opts.Drain(r.URL.Query().Has("inboundonly"))
	}
	io.WriteString(w, "OK\n")
}

func (s *Server) handleQuit(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "OK\n")
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if s.opts.Quit != nil {
		go s.opts.Quit()
	}
}
