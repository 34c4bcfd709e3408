package local

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/trellis-mesh/trellis/internal/ca"
)

// CA tells a Runner to give each workload's proxy its own credential for
// trellisd's certificate API: a random token, registered with trellisd by
// its hash in CredentialsFile (trellisd --workload-credentials) and handed
// to that proxy alone, through an inherited pipe (never a file another
// process could open). The proxy's environment says where:
//
//	CA_ADDR=<trellisd's CA address>
//	TRELLIS_CA_TOKEN_FD=3           read the token from this descriptor once, at start
//	TRELLIS_CA_ROOT_CERT=<file>     the trust bundle that verifies trellisd
//	TRELLIS_SERVICE_ACCOUNT=<sa>    the identity the token stands for, with POD_NAMESPACE
type CA struct {
	// Address is trellisd's CA address proxies dial; empty means the
	// bridge address, port 15012.
	Address string
	// CredentialsFile receives the token hashes; trellisd reads it.
	CredentialsFile string
	// RootCertFile is the trust bundle trellisd writes (--ca-root-file).
	RootCertFile string
	// CertTTL, when set, is the workload certificates' lifetime: trellisd's
	// default and maximum (--workload-cert-ttl, --max-workload-cert-ttl)
	// and what the proxies ask for (SECRET_TTL). Zero keeps 24 h.
	CertTTL time.Duration
}

// TokenFD is the descriptor a proxy reads its CA token from.
const TokenFD = 3

// CAAddress is trellisd's CA port on the bridge address.
func (p *Plan) CAAddress() string {
	return netip.AddrPortFrom(p.HostIP, ca.DefaultPort).String()
}

// ServiceAccountName is the workload's service account; empty in the spec
// means "default", as for a pod.
func (w PlacedWorkload) ServiceAccountName() string {
	if w.ServiceAccount == "" {
		return "default"
	}
	return w.ServiceAccount
}

// issueCredentials makes one token per workload and registers their
// hashes. The tokens stay in this process's memory: a pod workload's
// proxy starts again with each run of its pod.
func (m *Mesh) issueCredentials() error {
	c := m.r.CA
	// The directory also holds the trust bundle the proxies read; the
	// credentials file in it is root's alone.
	dir := filepath.Dir(c.CredentialsFile)
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := m.TrackFile(dir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []string{c.CredentialsFile, c.RootCertFile} {
		if err := m.TrackFile(f); err != nil {
			return err
		}
	}
	tokens := map[string]ca.Caller{}
	m.tokens = map[string]string{}
	for _, w := range m.Plan.Workloads {
		tok, err := ca.NewToken()
		if err != nil {
			return err
		}
		m.tokens[w.Name] = tok
		tokens[tok] = ca.Caller{Namespace: w.Namespace, ServiceAccount: w.ServiceAccountName()}
	}
	m.r.logf("registering %d workload credentials in %s", len(tokens), c.CredentialsFile)
	if err := ca.WriteCredentials(c.CredentialsFile, tokens); err != nil {
		return fmt.Errorf("workload credentials: %w", err)
	}
	return nil
}

// proxyCredential returns the environment and the pipe (to pass as
// TokenFD) carrying w's token to its proxy. The caller closes the pipe
// after starting the proxy.
func (m *Mesh) proxyCredential(w PlacedWorkload) ([]string, *os.File, error) {
	tok, ok := m.tokens[w.Name]
	if !ok {
		return nil, nil, fmt.Errorf("no credential issued for %s", w.Name)
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	_, err = wr.WriteString(tok)
	wr.Close()
	if err != nil {
		rd.Close()
		return nil, nil, fmt.Errorf("hand the credential to %s's proxy: %w", w.Name, err)
	}
	addr := m.r.CA.Address
	if addr == "" {
		addr = m.Plan.CAAddress()
	}
	env := []string{
		"CA_ADDR=" + addr,
		"TRELLIS_CA_TOKEN_FD=" + strconv.Itoa(TokenFD),
		"TRELLIS_CA_ROOT_CERT=" + m.r.CA.RootCertFile,
		"TRELLIS_SERVICE_ACCOUNT=" + w.ServiceAccountName(),
	}
	if m.r.CA.CertTTL > 0 {
		env = append(env, "SECRET_TTL="+m.r.CA.CertTTL.String())
	}
	return env, rd, nil
}

// caFiles are where MeshRunner keeps the CA's files: the root persists in
// the state directory across runs; the credentials and the published
// trust bundle belong to one run.
func caFiles(stateDir, prefix string) (dir string, c CA) {
	base := StateDir(stateDir)
	return filepath.Join(base, "ca"), CA{
		CredentialsFile: filepath.Join(base, prefix+"-ca", "workload-credentials"),
		RootCertFile:    filepath.Join(base, prefix+"-ca", "root-cert.pem"),
	}
}
