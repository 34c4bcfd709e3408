package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/trellis-mesh/trellis/internal/proxy/bootstrap"
	"github.com/trellis-mesh/trellis/internal/proxy/identity"
)

// istioTokenPath is where Istio's injector mounts the projected
// ServiceAccount token (audience istio-ca).
const istioTokenPath = "/var/run/secrets/tokens/istio-token"

// caFlags are the workload-certificate flags (pilot-agent's CA_ADDR and
// friends); see docs/security.md.
type caFlags struct {
	address, serverName, rootCert, tokenFile, trustDomain string
	tokenFD                                               int
	ttl                                                   time.Duration
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (c *caFlags) register(f *pflag.FlagSet) {
	fd := -1
	if v := os.Getenv("TRELLIS_CA_TOKEN_FD"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			fd = n
		}
	}
	ttl := 24 * time.Hour
	if v := os.Getenv("SECRET_TTL"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			ttl = d
		}
	}
	f.StringVar(&c.address, "ca-address", os.Getenv("CA_ADDR"), "trellisd's CA (Istio certificate API over TLS), host:port (env CA_ADDR); empty: no workload certificate")
	f.StringVar(&c.serverName, "ca-server-name", os.Getenv("TRELLIS_CA_SERVER_NAME"), "name verified in the CA's certificate; default the --ca-address host")
	f.StringVar(&c.rootCert, "ca-root-cert", envOr("TRELLIS_CA_ROOT_CERT", "/var/run/secrets/istio/root-cert.pem"), "trust bundle verifying the CA (env TRELLIS_CA_ROOT_CERT)")
	f.IntVar(&c.tokenFD, "ca-token-fd", fd, "read the CA credential once from this inherited descriptor (env TRELLIS_CA_TOKEN_FD; local mode)")
	f.StringVar(&c.tokenFile, "ca-token-file", os.Getenv("TRELLIS_CA_TOKEN_FILE"), "CA credential file, re-read before each request; default "+istioTokenPath+" when no --ca-token-fd")
	f.StringVar(&c.trustDomain, "trust-domain", envOr("TRUST_DOMAIN", identity.DefaultTrustDomain), "SPIFFE trust domain of the workload identity (env TRUST_DOMAIN)")
	f.DurationVar(&c.ttl, "workload-cert-ttl", ttl, "certificate lifetime asked of the CA (env SECRET_TTL)")
}

// options builds the identity options, or nil when no CA is configured.
// The namespace and service account are the node's (flags or
// environment); with a bootstrap file the proxy falls back to its node
// metadata.
func (c *caFlags) options(node bootstrap.Options) (*identity.Options, error) {
	if c.address == "" {
		return nil, nil
	}
	o := &identity.Options{Address: c.address, ServerName: c.serverName, RootCertFile: c.rootCert,
		TrustDomain: c.trustDomain, Namespace: node.Namespace, ServiceAccount: node.ServiceAccount, ClusterID: node.ClusterID, TTL: c.ttl}
	switch {
	case c.tokenFD >= 0:
		f := os.NewFile(uintptr(c.tokenFD), "ca-token")
		if f == nil {
			return nil, fmt.Errorf("--ca-token-fd %d: not an open descriptor", c.tokenFD)
		}
		tok, err := identity.ReadToken(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("--ca-token-fd %d: %w", c.tokenFD, err)
		}
		o.Token = tok
	case c.tokenFile != "":
		o.Token = identity.TokenFile(c.tokenFile)
	default:
		o.Token = identity.TokenFile(istioTokenPath)
	}
	return o, nil
}
