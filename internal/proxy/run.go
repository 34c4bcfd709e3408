package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/trellis-mesh/trellis/internal/proxy/accesslog"
	"github.com/trellis-mesh/trellis/internal/proxy/admin"
	"github.com/trellis-mesh/trellis/internal/proxy/bootstrap"
	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/failures"
	"github.com/trellis-mesh/trellis/internal/proxy/hotrestart"
	"github.com/trellis-mesh/trellis/internal/proxy/httpconn"
	"github.com/trellis-mesh/trellis/internal/proxy/identity"
	"github.com/trellis-mesh/trellis/internal/proxy/listener"
	"github.com/trellis-mesh/trellis/internal/proxy/stats"
	"github.com/trellis-mesh/trellis/internal/proxy/tcpproxy"
	"github.com/trellis-mesh/trellis/internal/proxy/telemetry"
	"github.com/trellis-mesh/trellis/internal/proxy/tlsterm"
	"github.com/trellis-mesh/trellis/internal/proxy/trace"
	"github.com/trellis-mesh/trellis/internal/proxy/xdsclient"
	"github.com/trellis-mesh/trellis/internal/version"
)

// Options configure Run. Zero values take the documented defaults.
type Options struct {
	// ConfigPath is an Envoy bootstrap file (YAML or JSON). When empty the
	// bootstrap is built from Node (flags and environment, like
	// pilot-agent).
	ConfigPath string
	// Node describes the proxy when no bootstrap file is given, and
	// overrides nothing when one is.
	Node bootstrap.Options
	// Concurrency sets GOMAXPROCS when positive.
	Concurrency int
	// DrainDuration is how long the proxy drains after SIGTERM (ctx
	// cancellation) before it closes what is left and returns (default
	// 5 s, Istio's terminationDrainDuration). While it drains, a sidecar's
	// inbound responses close their connections and everything else,
	// outbound above all, is served as before; a gateway drains all
	// listeners.
	DrainDuration time.Duration
	// LogLevel is debug, info (default), warning or error.
	LogLevel string
	// Rebind maps configured listener addresses to the addresses actually
	// bound (see listener.Server.Rebind).
	Rebind map[string]string
	// ReadyAddress, PrometheusAddress and MergedAddress serve
	// /healthz/ready (Istio 15021), /stats/prometheus (15090) and
	// pilot-agent's merged metrics (15020); empty means not served. The
	// admin API address comes from the bootstrap's admin.address.
	ReadyAddress, PrometheusAddress, MergedAddress string
	// AppMetricsURL is the application's metrics endpoint merged on
	// MergedAddress.
	AppMetricsURL string
	// AppProbers is the JSON of ISTIO_KUBE_APP_PROBERS: the application
	// probes the injector moved to MergedAddress (/app-health/...).
	AppProbers string
	// Log receives the proxy's own log lines (default stderr).
	Log io.Writer
	// Ready, when set, is called once the static config is serving (and,
	// with xDS, after the first complete update).
	Ready func(p *Proxy)
	// InitialFetchTimeout bounds how long an LDS listener warms waiting
	// for its RDS route configurations, and how long readiness waits for
	// the clusters the first config names (default 15 s, Envoy's
	// initial_fetch_timeout).
	InitialFetchTimeout time.Duration
	// Identity, when set, makes the proxy obtain and renew its workload
	// certificate from the CA and serve it to itself as the SDS secrets
	// `default` and `ROOTCA` (its Sink is the proxy's secret store). Nil
	// means no CA: only secrets sent over xDS exist.
	Identity *identity.Options
	// HotRestart, when set, makes the proxy a hot restart generation
	// (Envoy's --restart-epoch and --base-id; hotrestart.go): it listens
	// for a successor and, with Epoch > 0, takes over the listening
	// sockets of the process of the previous epoch first. Nil: neither.
	HotRestart *hotrestart.Options
}

// Proxy is a running proxy: what the admin endpoints and tests look at.
type Proxy struct {
	Bootstrap *bootstrapv3.Bootstrap
	Clusters  *cluster.Manager
	Listeners *listener.Server
	Stats     *stats.Store
	Secrets   *tlsterm.Store
	Telemetry *telemetry.Recorder
	// Failures holds the last failed requests (/debug/failures).
	Failures *failures.Ring
	XDS      *xdsclient.Client
	Identity *identity.Agent // nil without Options.Identity
	Admin    *admin.Server
	HTTP     *httpconn.Manager
	TCP      *tcpproxy.Proxy
	sinks    *accesslog.Sinks
	tracers  *trace.Registry
	routes   routeTables
	static   []*listener.Listener
	cc       listener.Compilers
	// drainAll and drainInbound are the drains in force (drain.go).
	drainAll, drainInbound atomic.Bool
	logger                 *log.Logger
	debug                  bool
	mu                     sync.Mutex
	// listener warming (warming.go), guarded by mu
	warm        map[string]*warming
	active      map[string]*listener.Listener
	desired     []*listener.Listener
	ldsSeen     bool
	warmTimeout time.Duration
	initWarming atomic.Bool
	// initDeadline (unix ns) ends the wait for the first clusters;
	// initDone latches readiness (warming.go).
	initDeadline atomic.Int64
	initDone     atomic.Bool
	// hot restart (hotrestart.go): child is the connection to the parent
	// (nil unless this process took over from one); adminInherited are
	// the parent's admin sockets; handedOver is set, and handover
	// receives, when a successor took over from this process.
	child          *hotrestart.Child
	adminInherited map[string]net.Listener
	handedOver     atomic.Bool
	handover       chan hotrestart.Drain
}

// Routes returns the RDS route configurations the proxy holds.
func (p *Proxy) Routes() *routeTables { return &p.routes }

func (p *Proxy) logf(format string, args ...any) { p.logger.Printf(format, args...) }

// LoadBootstrap returns the bootstrap Run would use.
func LoadBootstrap(o Options) (*bootstrapv3.Bootstrap, error) {
	if o.ConfigPath != "" {
		return bootstrap.Load(o.ConfigPath)
	}
	return bootstrap.FromFlags(o.Node)
}

// sidecarGCPercent is the proxy's GOGC unless the environment sets one. A
// sidecar runs next to every workload, so it trades a little CPU for a
// smaller heap: the HTTP/1.1 path allocates nothing and does not pay;
// HTTP/2 streams (golang.org/x/net/http2) allocate ~15 KiB each, and at
// the default of 100 their garbage adds ~2 MiB of peak RSS at 1,000 rps.
const sidecarGCPercent = 50

// Run starts the proxy and serves until ctx ends, then drains.
func Run(ctx context.Context, o Options) error {
	if o.Concurrency > 0 {
		runtime.GOMAXPROCS(o.Concurrency)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(sidecarGCPercent)
	}
	bs, err := LoadBootstrap(o)
	if err != nil {
		return err
	}
	p, err := New(bs, o)
	if err != nil {
		return err
	}
	return p.Serve(ctx, o)
}

// New builds a proxy from a bootstrap: static clusters and listeners are
// compiled (an error here is fatal, like Envoy's).
func New(bs *bootstrapv3.Bootstrap, o Options) (*Proxy, error) {
	w := o.Log
	if w == nil {
		w = os.Stderr
	}
	p := &Proxy{Bootstrap: bs, Stats: stats.NewStore(), handover: make(chan hotrestart.Drain, 1), Secrets: tlsterm.NewStore(), logger: log.New(w, "trellis-proxy ", log.LstdFlags|log.Lmicroseconds)}
	p.debug = strings.EqualFold(o.LogLevel, "debug")
	p.warmTimeout = o.InitialFetchTimeout
	if p.warmTimeout <= 0 {
		p.warmTimeout = defaultWarmTimeout
	}
	interner := &telemetry.Interner{}
	p.Telemetry = telemetry.NewRecorder(interner)
	p.Clusters = cluster.NewManager(cluster.Options{Stats: p.Stats, Interner: interner, Logf: p.logf, Secrets: p.Secrets})
	if err := p.Clusters.AddStatic(bs.GetStaticResources().GetClusters()); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	p.HTTP = &httpconn.Manager{
		Clusters: p.Clusters,
		Draining: p.drains,
	}
	p.TCP = &tcpproxy.Proxy{Clusters: p.Clusters}
	tel := newTelemetry(p.Telemetry, interner, bs.GetNode())
	tel.ownCert = func() *tls.Certificate { return p.Secrets.Certificate(identity.CertSecret) }
	p.Failures = failures.New(failures.Size)
	tel.failures = p.Failures
	p.HTTP.Telemetry = tel
	p.TCP.Telemetry = tel
	p.HTTP.PeerMetadata, p.HTTP.PeerMetadataID = tel.peerHeader, tel.peerID
	p.sinks = accesslog.NewSinks(p.Stats)
	if o.Log != nil {
		p.sinks.Stdout = o.Log
	}
	p.tracers = newTracers(p.Clusters, p.logf)
	p.tracers.Stats = p.Stats
	p.cc = listener.Compilers{Routes: &p.routes, AccessLogs: accessLogs(p.sinks), TCPLogs: tcpAccessLogs(p.sinks), Secrets: p.Secrets, Stats: p.Stats,
		Tracing: tracingCompiler(p.tracers, bs.GetNode())}
	p.Listeners = &listener.Server{HTTP: p.HTTP, TCP: p.TCP, Rebind: o.Rebind, DrainTime: o.DrainDuration}
	if p.debug {
		p.Listeners.Logf = p.logf
		p.HTTP.Debugf = p.logf
	}
	if o.Identity != nil {
		opts := *o.Identity
		opts.Sink = p.Secrets
		md := bs.GetNode().GetMetadata().GetFields()
		if opts.Namespace == "" {
			opts.Namespace = md["NAMESPACE"].GetStringValue()
		}
		if opts.ServiceAccount == "" {
			opts.ServiceAccount = md["SERVICE_ACCOUNT"].GetStringValue()
		}
		if opts.Logf == nil {
			opts.Logf = p.logf
		}
		a, err := identity.New(opts)
		if err != nil {
			return nil, fmt.Errorf("workload identity: %w", err)
		}
		p.Identity = a
	}
	for i, l := range bs.GetStaticResources().GetListeners() {
		c, err := listener.Compile(l, p.cc)
		if err != nil {
			return nil, fmt.Errorf("bootstrap: static_resources.listeners[%d]: %w", i, err)
		}
		p.static = append(p.static, c)
	}
	return p, nil
}

// Apply is the xDS handler: CDS and EDS go to the cluster manager, LDS and
// RDS are compiled here; an error NACKs the update.
func (p *Proxy) Apply(typeURL string, res map[string]*anypb.Any) error {
	switch typeURL {
	case resourcev3.ClusterType:
		return p.Clusters.ApplyClusters(res)
	case resourcev3.EndpointType:
		return p.Clusters.ApplyEndpoints(res)
	case resourcev3.RouteType:
		if err := p.routes.apply(res); err != nil {
			return err
		}
		p.routesArrived()
		return nil
	case resourcev3.SecretType:
		// Secrets are decoded and parsed once, into the store TLS
		// termination and upstream TLS read at handshake time.
		return p.Secrets.ApplyAny(res)
	case resourcev3.ListenerType:
		if p.handedOver.Load() {
			// A successor serves the sockets: this process accepts no
			// more and keeps its draining connections on their config.
			return nil
		}
		ls, err := compileListeners(res, p.cc)
		if err != nil {
			return err
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.setListeners(ls)
	}
	return fmt.Errorf("unsupported resource type %s", typeURL)
}

// Serve starts the listeners and the xDS client and blocks until ctx ends;
// then it drains for DrainDuration (see shutdown) and returns.
func (p *Proxy) Serve(ctx context.Context, o Options) error {
	defer p.Clusters.Close()
	defer p.tracers.Close() // a last flush of queued spans, before the clusters go
	ctx, quit := context.WithCancel(ctx)
	defer quit()
	started := time.Now()
	if o.HotRestart != nil {
		p.Stats.Scope("server", "").Gauge("hot_restart_epoch").Set(int64(o.HotRestart.Epoch))
		if o.HotRestart.Epoch > 0 {
			if err := p.inheritSockets(ctx, o); err != nil {
				return err
			}
		}
	}
	if p.child != nil {
		defer p.child.Close()
	}
	if err := p.Listeners.Update(context.Background(), p.static); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	errc := make(chan error, 1)
	if p.Identity != nil {
		go p.Identity.Run(ctx)
	}
	dump := &admin.XDSDump{Bootstrap: p.Bootstrap, Started: started, Warming: p.warmingState}
	var synced atomic.Bool
	synced.Store(p.Bootstrap.GetDynamicResources().GetAdsConfig() == nil)
	if p.Bootstrap.GetDynamicResources().GetAdsConfig() != nil {
		ads, err := bootstrap.ADSTarget(p.Bootstrap)
		if err != nil {
			return err
		}
		c, err := xdsclient.New(xdsclient.Options{
			Address:        ads.Address,
			Node:           p.Bootstrap.GetNode(),
			SotW:           !ads.Delta,
			Handler:        p,
			MaxMessageSize: ads.MaxMessageSize,
			Logf:           p.logf,
			// control_plane.connected_state, cluster_manager.cds.update_*,
			// listener_manager.lds.update_*, xds.{eds,rds}.update_* on /stats.
			Stats: p.Stats,
		})
		if err != nil {
			return err
		}
		p.XDS = c
		dump.Client = c
		go func() {
			select {
			case <-c.Synced():
				synced.Store(true)
			case <-ctx.Done():
			}
		}()
		go func() {
			if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- err
			}
		}()
		if o.Ready != nil {
			go func() {
				select {
				case <-c.Synced():
					o.Ready(p)
				case <-ctx.Done():
				}
			}()
		}
	}
	if p.child != nil {
		// Warm before accepting: the parent serves meanwhile.
		p.logf("hot restart epoch %d: warming the configuration before accepting", o.HotRestart.Epoch)
		if !p.waitInitialized(ctx, synced.Load) {
			p.Listeners.Close()
			return nil
		}
	}
	ad, err := admin.New(admin.Options{
		Inherited:         p.adminInherited,
		Address:           p.adminAddress(),
		ReadyAddress:      o.ReadyAddress,
		PrometheusAddress: o.PrometheusAddress,
		MergedAddress:     o.MergedAddress,
		AppMetricsURL:     o.AppMetricsURL,
		AppProbers:        o.AppProbers,
		ConfigSource:      dump,
		Clusters:          p.Clusters,
		Certificates:      p.certChains,
		Stats:             p.Stats,
		Telemetry:         p.Telemetry,
		Failures:          p.Failures,
		Listeners:         p.Listeners.Listeners,
		Ready:             func() bool { return p.initialized(synced.Load()) },
		Drain:             p.startDrain,
		Quit:              quit,
		Version:           version.Version,
		NodeID:            p.Bootstrap.GetNode().GetId(),
	})
	if err != nil {
		p.Listeners.Close()
		return err
	}
	p.Admin = ad
	defer ad.Close()
	if p.child != nil {
		p.takeOver(ctx, o)
	}
	if o.HotRestart != nil {
		hs, err := p.listenForSuccessor(o)
		if err != nil {
			p.Listeners.Close()
			return err
		}
		defer hs.Close()
	}
	if p.XDS == nil && o.Ready != nil {
		o.Ready(p)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	case d := <-p.handover:
		p.exitAfterHandover(d)
		return nil
	}
	p.shutdown(o.DrainDuration)
	return nil
}

// adminAddress is the bootstrap's admin address ("" when it has none).
func (p *Proxy) adminAddress() string {
	if p.Bootstrap.GetAdmin().GetAddress() == nil {
		return ""
	}
	return bootstrap.AdminAddress(p.Bootstrap)
}

// certChains lists the certificate secrets the proxy holds, for /certs.
func (p *Proxy) certChains() []admin.CertChain {
	var out []admin.CertChain
	for _, name := range p.Secrets.Names() {
		c := p.Secrets.Certificate(name)
		if c == nil {
			continue
		}
		cc := admin.CertChain{Secret: name}
		for _, der := range c.Certificate {
			if x, err := x509.ParseCertificate(der); err == nil {
				cc.Chain = append(cc.Chain, x)
			}
		}
		out = append(out, cc)
	}
	return out
}
