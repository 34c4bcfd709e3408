package trellisd

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/trellis-mesh/trellis/internal/ca"
)

// DefaultCACertsDir is where Istio mounts a plugged-in CA (the cacerts
// Secret).
const DefaultCACertsDir = "/etc/cacerts"

// caStores picks where the CA's key material lives: the stores given in
// Options (Kubernetes Secrets), else the cacerts and CA directories.
func (o *Options) caStores() (plugged, self ca.Store, err error) {
	plugged, self = o.CAPlugged, o.CAStore
	if plugged == nil {
		dir := o.CACertsDir
		if dir == "" {
			dir = DefaultCACertsDir
		}
		plugged = ca.Dir(dir)
	}
	if self == nil {
		dir := o.CADir
		if dir == "" {
			cfg, err := os.UserConfigDir()
			if err != nil {
				return nil, nil, fmt.Errorf("ca dir: %w (set --ca-dir)", err)
			}
			dir = filepath.Join(cfg, "trellis", "ca")
		}
		self = ca.Dir(dir)
	}
	return plugged, self, nil
}

// servingNames are the DNS SANs of trellisd's certificate on the CA port:
// Istio's istiod.<ns>.svc names, so Istio-configured proxies verify it,
// the installed Service's trellisd.<ns>.svc names, and "trellisd", the
// name local-mode proxies verify.
func (o *Options) servingNames() []string {
	ns := o.SystemNamespace
	if ns == "" {
		ns = "trellis-system"
	}
	suffix := o.DomainSuffix
	if suffix == "" {
		suffix = "cluster.local"
	}
	return []string{"istiod." + ns + ".svc", "istiod." + ns + ".svc." + suffix,
		"trellisd." + ns + ".svc", "trellisd." + ns + ".svc." + suffix, "trellisd", "localhost"}
}

// startCA loads (or creates) the CA and serves Istio's certificate API on
// the bound listener until ctx ends.
func (s *Server) startCA(ctx context.Context, lis net.Listener) (*grpc.Server, error) {
	o := &s.opts
	plugged, self, err := o.caStores()
	if err != nil {
		return nil, err
	}
	auth := o.CAAuth
	if auth == nil && o.WorkloadCredentials != "" {
		auth = ca.Credentials{Path: o.WorkloadCredentials}
	}
	a, err := ca.Load(ctx, plugged, self, o.trustDomain(), time.Now())
	if err != nil {
		return nil, err
	}
	kind := "self-signed root from " + self.String()
	if a.Plugged() {
		kind = "plugged-in CA from " + plugged.String()
	}
	if o.CARootFile != "" {
		if err := os.MkdirAll(filepath.Dir(o.CARootFile), 0o755); err != nil {
			return nil, fmt.Errorf("ca root file: %w", err)
		}
		tmp := o.CARootFile + ".tmp"
		if err := os.WriteFile(tmp, a.RootsPEM(), 0o644); err != nil {
			return nil, fmt.Errorf("ca root file: %w", err)
		}
		if err := os.Rename(tmp, o.CARootFile); err != nil {
			return nil, fmt.Errorf("ca root file: %w", err)
		}
	}
	for _, pub := range o.RootPublishers {
		go func() {
			if err := pub(ctx, a.RootsPEM()); err != nil && ctx.Err() == nil {
				o.Logf("trellisd: publishing the trust bundle stopped: %v", err)
			}
		}()
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if ta, ok := lis.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() && !ta.IP.IsLoopback() {
		ips = append(ips, ta.IP)
	}
	srv := &ca.Server{Authority: a, Auth: auth, TrustDomain: o.trustDomain(),
		DefaultTTL: o.WorkloadCertTTL, MaxTTL: o.MaxWorkloadCertTTL, Logf: o.Logf}
	g := srv.GRPCServer(&ca.ServingCerts{Authority: a, DNSNames: o.servingNames(), IPs: ips})
	go g.Serve(lis)
	if auth == nil {
		o.Logf("trellisd: CA on %s (%s); no authenticator configured, every certificate request will be refused", lis.Addr(), kind)
	} else {
		o.Logf("trellisd: CA on %s (%s, trust domain %s)", lis.Addr(), kind, o.trustDomain())
	}
	return g, nil
}

func (o *Options) trustDomain() string {
	if o.TrustDomain == "" {
		return ca.DefaultTrustDomain
	}
	return o.TrustDomain
}

// CAAddr is the bound CA address, or "" when disabled.
func (s *Server) CAAddr() string { return addrString(s.caAddr) }
