package trellisd

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	meshv1alpha1 "istio.io/api/mesh/v1alpha1"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/config/file"
	"github.com/trellis-mesh/trellis/internal/dashboard"
	"github.com/trellis-mesh/trellis/internal/jwks"
	"github.com/trellis-mesh/trellis/internal/registry"
	"github.com/trellis-mesh/trellis/internal/registry/serviceentry"
	"github.com/trellis-mesh/trellis/internal/xds/server"
	"github.com/trellis-mesh/trellis/internal/xds/translate"
)

// Options configure the control plane. The zero value of each field is
// documented; Run fills Istio's defaults.
type Options struct {
	// ConfigDir is a directory of Istio YAML watched for changes; empty
	// means no file source (config comes from Store/ConfigSources only).
	ConfigDir string
	// XDSAddress is where ADS is served over plaintext gRPC; empty means
	// ":15010".
	XDSAddress string
	// DebugAddress serves /debug/syncz, /debug/configz, /debug/registryz and
	// /debug/config_dump; empty disables it (the flag defaults to ":8080").
	DebugAddress string
	// MetricsAddress serves Prometheus /metrics; empty disables it (the
	// flag defaults to ":15014").
	MetricsAddress string
	// DashboardAddress serves the web dashboard (internal/dashboard);
	// empty disables it (the flag defaults to 127.0.0.1:20001, Kiali's
	// port, on loopback only).
	DashboardAddress string
	// PrometheusURL, when set, is where the dashboard queries request
	// metrics; empty means trellisd scrapes the connected proxies.
	PrometheusURL string
	// DashboardScrapeInterval and DashboardWindow: how often the dashboard
	// reads metrics (zero: 5s) and the span its rates cover (zero: 30s).
	DashboardScrapeInterval time.Duration
	DashboardWindow         time.Duration
	// DomainSuffix is the cluster domain; empty means "cluster.local".
	DomainSuffix string
	// OutboundTrafficPolicy is ALLOW_ANY (empty means this) or
	// REGISTRY_ONLY.
	OutboundTrafficPolicy string
	// AccessLogFile turns on proxy access logs to that path ("/dev/stdout").
	AccessLogFile string
	// AccessLogEncoding is TEXT (empty) or JSON.
	AccessLogEncoding string
	// MeshConfig, when set, supplies the tracing options: extensionProviders
	// (opentelemetry, zipkin), defaultProviders.tracing and
	// defaultConfig.tracing.sampling (see translate.MeshOptions). Its other
	// fields are not read here.
	MeshConfig *meshv1alpha1.MeshConfig
	// Debounce is the quiet period a burst of changes must end with before
	// a push; zero means 100ms. DebounceMax bounds the delay of a push under
	// a steady stream of changes; zero means 1s.
	Debounce    time.Duration
	DebounceMax time.Duration
	// Store is the config store to serve; nil means a new one. Sources that
	// feed it from elsewhere (Kubernetes) may be given here or started by
	// ConfigSources.
	Store *config.Store
	// ConfigSources are started with the store once Run begins and run until
	// ctx ends (e.g. the Kubernetes CRD watcher). An error from one is
	// logged; it does not stop trellisd.
	ConfigSources []func(ctx context.Context, store *config.Store) error
	// Registries are merged after the ServiceEntry/WorkloadEntry registry
	// (e.g. Kubernetes Services and EndpointSlices); a change in any of them
	// triggers a push.
	Registries []registry.Source
	// Credentials, when set, supplies the gateway TLS secrets that Gateway
	// servers name in credentialName (e.g. Kubernetes Secrets); a change
	// triggers a push. Nil means none are known: gateways still reference
	// them over SDS.
	Credentials CredentialSource
	// JWKSRefresh is how often trellisd fetches each RequestAuthentication
	// jwksUri again (zero: 20 minutes, as istiod); JWKSRetry is the wait
	// after a failed fetch (zero: 30 seconds). Until a jwksUri is fetched,
	// its tokens are refused.
	JWKSRefresh, JWKSRetry time.Duration
	// TrustDomain is the SPIFFE trust domain of workload identities
	// (MeshConfig trustDomain); empty means "cluster.local".
	TrustDomain string
	// CAAddress serves Istio's certificate API
	// (istio.v1.auth.IstioCertificateService) over TLS; empty disables the
	// CA (the flag defaults to ":15012"). See docs/security.md.
	CAAddress string
	// CADir persists the self-signed root (ca-cert.pem, ca-key.pem,
	// root-cert.pem) when CAStore is nil; empty means
	// <user config dir>/trellis/ca.
	CADir string
	// CACertsDir holds Istio's plugged-in CA (ca-cert.pem, ca-key.pem,
	// cert-chain.pem, root-cert.pem), used instead of the self-signed root
	// when it has ca-key.pem; consulted when CAPlugged is nil. Empty means
	// /etc/cacerts.
	CACertsDir string
	// CAStore and CAPlugged, when set, replace CADir and CACertsDir (in
	// Kubernetes: the istio-ca-secret and cacerts Secrets).
	CAStore, CAPlugged ca.Store
	// CAAuth authenticates certificate requests (Kubernetes: TokenReview);
	// nil means the WorkloadCredentials file.
	CAAuth ca.Authenticator
	// WorkloadCredentials is the local-mode credentials file written by
	// `trellis local up` (sha256 of each workload's token, its namespace
	// and service account); used when CAAuth is nil.
	WorkloadCredentials string
	// CARootFile, when set, receives the trust bundle (PEM) at start, for
	// local-mode proxies to read.
	CARootFile string
	// WorkloadCertTTL is the lifetime of a workload certificate whose
	// request names none; zero means 24h. MaxWorkloadCertTTL caps what a
	// request may ask for; zero means 24h.
	WorkloadCertTTL, MaxWorkloadCertTTL time.Duration
	// SystemNamespace is the control plane's namespace, named in the CA
	// port's certificate as istiod.<ns>.svc; empty means "trellis-system".
	SystemNamespace string
	// RootPublishers are started once the CA is loaded, with its trust
	// bundle, and run until ctx ends (Kubernetes: the istio-ca-root-cert
	// ConfigMap in every namespace). An error is logged.
	RootPublishers []func(ctx context.Context, rootsPEM []byte) error
	// Logf receives operational messages; nil means log.Printf.
	Logf func(format string, args ...any)
	// Ready, when set, is called once every listener is bound, with the
	// running server (its bound addresses).
	Ready func(*Server)
}

// CredentialSource is a changing set of gateway credentials, keyed
// "namespace/name". Credentials must be cheap and safe to call
// concurrently; the map must not be altered.
type CredentialSource interface {
	Credentials() map[string]*translate.Credential
	Subscribe(fn func())
}

// Server is a running control plane, as passed to Options.Ready.
type Server struct {
	opts    Options
	store   *config.Store
	watcher *file.Watcher
	gen     *generator
	ads     *server.Server
	reg     *prometheus.Registry
	version atomic.Uint64

	// ungated is the last logged list of networks without a gateway.
	ungatedMu sync.Mutex
	ungated   string

	xdsAddr, debugAddr, metricsAddr, caAddr, dashboardAddr net.Addr
	configVersion                                          prometheus.Gauge
	// jwks fetches the RequestAuthentication jwksUri documents.
	jwks *jwks.Fetcher
}

// XDSAddr is the bound ADS address ("127.0.0.1:41234").
func (s *Server) XDSAddr() string { return addrString(s.xdsAddr) }

// DebugAddr is the bound debug address, or "" when disabled.
func (s *Server) DebugAddr() string { return addrString(s.debugAddr) }

// MetricsAddr is the bound metrics address, or "" when disabled.
func (s *Server) MetricsAddr() string { return addrString(s.metricsAddr) }

// DashboardAddr is the bound dashboard address, or "" when disabled.
func (s *Server) DashboardAddr() string { return addrString(s.dashboardAddr) }

// Store is the config store being served.
func (s *Server) Store() *config.Store { return s.store }

// ADS is the xDS server, for status.
func (s *Server) ADS() *server.Server { return s.ads }

// Version is the version of the state last pushed.
func (s *Server) Version() uint64 { return s.version.Load() }

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// mesh turns the options into translation's mesh options, or says which
// option is wrong.
func (o *Options) mesh() (translate.MeshOptions, error) {
	m := translate.DefaultMesh()
	if o.DomainSuffix != "" {
		m.DomainSuffix = o.DomainSuffix
	}
	switch o.OutboundTrafficPolicy {
	case "", "ALLOW_ANY":
		m.OutboundAllowAny = true
	case "REGISTRY_ONLY":
		m.OutboundAllowAny = false
	default:
		return m, fmt.Errorf("outbound traffic policy: got %q, want ALLOW_ANY or REGISTRY_ONLY", o.OutboundTrafficPolicy)
	}
	switch o.AccessLogEncoding {
	case "", "TEXT", "JSON":
		m.AccessLogEncoding = o.AccessLogEncoding
	default:
		return m, fmt.Errorf("access log encoding: got %q, want TEXT or JSON", o.AccessLogEncoding)
	}
	m.AccessLogFile = o.AccessLogFile
	m.TrustDomain = o.trustDomain()
	m.ApplyMeshConfig(o.MeshConfig)
	return m, nil
}

// Run serves until ctx ends. It returns an error when an option is invalid,
// the config directory cannot be read, or a listener cannot be bound.
func Run(ctx context.Context, o Options) error {
	return run(ctx, o, translateFuncs{})
}

func run(ctx context.Context, o Options, tr translator) error {
	mesh, err := o.mesh()
	if err != nil {
		return err
	}
	if o.XDSAddress == "" {
		o.XDSAddress = ":15010"
	}
	if o.Debounce <= 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.DebounceMax <= 0 {
		o.DebounceMax = time.Second
	}
	if o.Logf == nil {
		o.Logf = log.Printf
	}
	if o.MaxWorkloadCertTTL > 0 && o.WorkloadCertTTL > o.MaxWorkloadCertTTL {
		return fmt.Errorf("--workload-cert-ttl %s is longer than --max-workload-cert-ttl %s", o.WorkloadCertTTL, o.MaxWorkloadCertTTL)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	s := &Server{opts: o, store: o.Store, gen: newGenerator(tr), reg: prometheus.NewRegistry()}
	if s.store == nil {
		s.store = config.NewStore()
	}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.configVersion = prometheus.NewGauge(prometheus.GaugeOpts{Name: "trellis_config_version",
		Help: "Version of the config and registry state last pushed."})
	s.reg.MustRegister(s.configVersion)
	s.ads = server.New(server.Options{Generator: s.gen, Logf: o.Logf, Registerer: s.reg})

	// Bind everything first so that a bad address fails fast.
	xdsLis, err := net.Listen("tcp", o.XDSAddress)
	if err != nil {
		return fmt.Errorf("xds address: %w", err)
	}
	defer xdsLis.Close()
	s.xdsAddr = xdsLis.Addr()
	var httpServers []*http.Server
	serveHTTP := func(addr string, h http.Handler) (net.Addr, error) {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		httpServers = append(httpServers, hs)
		go hs.Serve(lis)
		return lis.Addr(), nil
	}
	defer func() {
		for _, hs := range httpServers {
			hs.Close()
		}
	}()
	if o.DebugAddress != "" {
		if s.debugAddr, err = serveHTTP(o.DebugAddress, s.debugHandler()); err != nil {
			return fmt.Errorf("debug address: %w", err)
		}
	}
	var caLis net.Listener
	if o.CAAddress != "" {
		if caLis, err = net.Listen("tcp", o.CAAddress); err != nil {
			return fmt.Errorf("ca address: %w", err)
		}
		defer caLis.Close()
		s.caAddr = caLis.Addr()
	}
	if o.MetricsAddress != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
		if s.metricsAddr, err = serveHTTP(o.MetricsAddress, mux); err != nil {
			return fmt.Errorf("metrics address: %w", err)
		}
	}

	if caLis != nil {
		g, err := s.startCA(ctx, caLis)
		if err != nil {
			return fmt.Errorf("ca: %w", err)
		}
		defer g.Stop()
	}
	if o.DashboardAddress != "" {
		d, err := dashboard.New(dashboard.Options{Mesh: &meshView{s: s}, DomainSuffix: mesh.DomainSuffix, PrometheusURL: o.PrometheusURL,
			ScrapeInterval: o.DashboardScrapeInterval, Window: o.DashboardWindow, Logf: o.Logf})
		if err != nil {
			return err
		}
		if s.dashboardAddr, err = serveHTTP(o.DashboardAddress, d.Handler()); err != nil {
			return fmt.Errorf("dashboard address: %w", err)
		}
		go d.Run(ctx)
	}

	// Sources: the directory is loaded before the first state is built, so
	// the first proxies get the whole config.
	if o.ConfigDir != "" {
		s.watcher = file.New(o.ConfigDir, s.store, file.Options{Logf: o.Logf})
		if err := s.watcher.Load(); err != nil {
			return fmt.Errorf("--config-dir: %w", err)
		}
		go func() {
			if err := s.watcher.Run(ctx); err != nil && ctx.Err() == nil {
				o.Logf("trellisd: config dir watch stopped: %v", err)
			}
		}()
	}
	for _, src := range o.ConfigSources {
		go func() {
			if err := src(ctx, s.store); err != nil && ctx.Err() == nil {
				o.Logf("trellisd: config source stopped: %v", err)
			}
		}()
	}

	deb := newDebouncer(o.Debounce, o.DebounceMax, func(first time.Time) {
		s.rebuild(mesh)
		s.ads.Push(server.Push{Changed: first})
	})
	s.store.Subscribe(func(*config.Snapshot) { deb.changed() })
	for _, r := range o.Registries {
		r.Subscribe(deb.changed)
	}
	if o.Credentials != nil {
		o.Credentials.Subscribe(deb.changed)
	}
	s.jwks = jwks.New(ctx)
	s.jwks.Refresh, s.jwks.Retry, s.jwks.Logf = o.JWKSRefresh, o.JWKSRetry, o.Logf
	s.jwks.Subscribe(deb.changed)
	s.rebuild(mesh)
	go deb.run(ctx)

	g := grpc.NewServer(append(server.ServerOptions(),
		grpc.MaxConcurrentStreams(1<<20),
		// Thousands of mostly idle streams: don't keep a write buffer each.
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(8<<10),
		// Dead peers are found by keepalive; a live but CPU-starved proxy gets
		// 20s to answer a ping before its stream is dropped.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	)...)
	s.ads.Register(g)
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(xdsLis) }()
	o.Logf("trellisd: xDS on %s, debug on %q, metrics on %q, CA on %q, dashboard on %q", s.XDSAddr(), s.DebugAddr(), s.MetricsAddr(), s.CAAddr(), s.DashboardAddr())
	if o.Ready != nil {
		o.Ready(s)
	}
	select {
	case <-ctx.Done():
		g.Stop()
		return nil
	case err := <-errc:
		if errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
		return fmt.Errorf("xds server: %w", err)
	}
}

// rebuild takes a new state from the store and the registries.
func (s *Server) rebuild(mesh translate.MeshOptions) {
	cfg := s.store.Snapshot()
	snaps := []*registry.Snapshot{serviceentry.Build(cfg, mesh.DomainSuffix)}
	for _, r := range s.opts.Registries {
		snaps = append(snaps, r.Snapshot())
	}
	reg := snaps[0]
	if len(snaps) > 1 {
		reg = registry.Merge(snaps...)
	}
	var creds map[string]*translate.Credential
	if s.opts.Credentials != nil {
		creds = s.opts.Credentials.Credentials()
	}
	s.logUngated(reg, mesh)
	var docs map[string]string
	if s.jwks != nil {
		s.jwks.Sync(translate.JWKSURIs(cfg))
		docs = s.jwks.Documents()
	}
	v := s.version.Add(1)
	s.gen.setState(&state{version: v, cfg: cfg, reg: reg, mesh: mesh, creds: creds, jwks: docs})
	s.configVersion.Set(float64(v))
}

// logUngated logs, when it changes, which networks have endpoints but no
// east-west gateway: proxies on other networks are not sent those
// endpoints (docs/multicluster.md).
func (s *Server) logUngated(reg *registry.Snapshot, mesh translate.MeshOptions) {
	counts := translate.NetworksWithoutGateway(reg, mesh)
	nets := make([]string, 0, len(counts))
	for n := range counts {
		nets = append(nets, n)
	}
	sort.Strings(nets)
	var parts []string
	for _, n := range nets {
		parts = append(parts, fmt.Sprintf("%s (%d endpoints)", n, counts[n]))
	}
	msg := strings.Join(parts, ", ")
	s.ungatedMu.Lock()
	changed := msg != s.ungated
	s.ungated = msg
	s.ungatedMu.Unlock()
	switch {
	case changed && msg != "":
		s.opts.Logf("trellisd: no east-west gateway known for network %s: proxies on other networks are not sent these endpoints; "+
			"add a Service labelled topology.istio.io/network with a port 15443 named tls", msg)
	case changed:
		s.opts.Logf("trellisd: every network with endpoints has an east-west gateway")
	}
}

// versionString is how a state version appears in xDS and debug output.
func versionString(v uint64) string { return strconv.FormatUint(v, 10) }
