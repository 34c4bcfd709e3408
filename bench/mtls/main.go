// Command mtls is the helper of bench/mtls.sh, which measures what mesh
// mTLS costs through two proxy hops (trellis-proxy and HAProxy):
//
//	mtls certs DIR                 the mesh CA (internal/ca, RSA 2048 root as
//	                               Istio's self-signed CA) and two ECDSA P-256
//	                               workload certificates with SPIFFE IDs, as
//	                               PEM files in DIR
//	mtls handshake -addr A ...     full mTLS handshakes against A as fast as
//	                               possible (no session resumption), handshakes/s
//	mtls idle -addr A -n N ...     opens N mTLS connections to A, prints
//	                               "ready" and holds them until stdin closes
//
// The client side presents the outbound workload's certificate and offers
// the ALPN a sidecar offers on mesh mTLS, so each handshake is the one
// hop A makes to hop B.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellis-mesh/trellis/internal/ca"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: mtls certs DIR | handshake [flags] | idle [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "certs":
		if len(os.Args) != 3 {
			err = errors.New("usage: mtls certs DIR")
			break
		}
		err = writeCerts(os.Args[2])
	case "handshake":
		err = handshake(os.Args[2:])
	case "idle":
		err = idle(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mtls:", err)
		os.Exit(1)
	}
}

// Workloads the bench's two hops run as.
var workloads = []string{"bench-outbound", "bench-inbound"}

// writeCerts writes root-cert.pem and, per workload W, W.pem (the chain, here
// the leaf: a self-signed root signs leaves directly) and W.key (PKCS#8).
func writeCerts(dir string) error {
	now := time.Now()
	keys, err := ca.NewSelfSigned(ca.DefaultTrustDomain, now)
	if err != nil {
		return err
	}
	auth, err := ca.SelfSigned(keys)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "root-cert.pem"), auth.RootsPEM(), 0o644); err != nil {
		return err
	}
	for _, sa := range workloads {
		// What the proxy's identity agent does: an ECDSA P-256 key and a
		// CSR, signed by the CA for the workload's SPIFFE identity.
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			return err
		}
		csr, err := x509.ParseCertificateRequest(csrDER)
		if err != nil {
			return err
		}
		leaf, err := auth.SignWorkload(csr, ca.Identity{TrustDomain: ca.DefaultTrustDomain, Namespace: "bench", ServiceAccount: sa}, now, 24*time.Hour)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, sa+".pem"), []byte(leaf), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, sa+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
			return err
		}
	}
	return nil
}

type clientFlags struct {
	addr, dir, sni, serverID string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "", "hop B's mTLS listener, host:port")
	fs.StringVar(&c.dir, "certs", "", "directory written by `mtls certs`")
	fs.StringVar(&c.sni, "sni", "outbound_.80_._.bench.bench.svc.cluster.local", "SNI sent")
	fs.StringVar(&c.serverID, "server-id", "spiffe://cluster.local/ns/bench/sa/bench-inbound", "SPIFFE ID the server's certificate must carry")
}

// config is the outbound sidecar's client side: its certificate, the mesh
// roots, the server's SPIFFE ID checked, ALPN istio, no session cache (every
// handshake is a full one).
func (c *clientFlags) config() (*tls.Config, error) {
	if c.addr == "" || c.dir == "" {
		return nil, errors.New("-addr and -certs are required")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(c.dir, "bench-outbound.pem"), filepath.Join(c.dir, "bench-outbound.key"))
	if err != nil {
		return nil, err
	}
	rootPEM, err := os.ReadFile(filepath.Join(c.dir, "root-cert.pem"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, errors.New("root-cert.pem: no certificate")
	}
	want := c.serverID
	return &tls.Config{
		ServerName:         c.sni,
		Certificates:       []tls.Certificate{cert},
		NextProtos:         []string{"istio-peer-exchange", "istio"},
		InsecureSkipVerify: true, // SPIFFE: chain and URI SAN checked below, not the DNS name
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			leaf := cs.PeerCertificates[0]
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return err
			}
			for _, u := range leaf.URIs {
				if u.String() == want {
					return nil
				}
			}
			return fmt.Errorf("server certificate does not carry %s", want)
		},
	}, nil
}

func dial(ctx context.Context, addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

func handshake(args []string) error {
	fs := flag.NewFlagSet("handshake", flag.ExitOnError)
	var cf clientFlags
	cf.register(fs)
	conc := fs.Int("c", 8, "concurrent handshakers")
	dur := fs.Duration("d", 10*time.Second, "how long")
	tls12 := fs.Bool("tls12", false, "cap at TLS 1.2 (default: TLS 1.3, what Istio negotiates)")
	fs.Parse(args)
	cfg, err := cf.config()
	if err != nil {
		return err
	}
	if *tls12 {
		cfg.MaxVersion = tls.VersionTLS12
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	errs := map[string]int{} // failures by message, address details cut
	var firstErr, negotiated atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := dial(ctx, cf.addr, cfg)
				if err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						msg := err.Error()
						if i := strings.LastIndex(msg, ": "); i >= 0 && strings.HasPrefix(msg, "dial ") {
							msg = "dial: " + msg[i+2:]
						}
						errMu.Lock()
						errs[msg]++
						errMu.Unlock()
					}
					continue
				}
				if ok.Add(1) == 1 {
					cs := c.ConnectionState()
					negotiated.Store(fmt.Sprintf("%s %s %s", tls.VersionName(cs.Version), cs.CurveID, tls.CipherSuiteName(cs.CipherSuite)))
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	e, _ := firstErr.Load().(string)
	n, _ := negotiated.Load().(string)
	eb, _ := json.Marshal(errs)
	fmt.Printf("{\"handshakes\":%d,\"failed\":%d,\"seconds\":%.3f,\"per_second\":%.1f,\"negotiated\":%q,\"first_error\":%q,\"errors\":%s}\n", ok.Load(), failed.Load(), el, float64(ok.Load())/el, n, e, eb)
	if ok.Load() == 0 {
		return fmt.Errorf("no handshake succeeded: %s", e)
	}
	return nil
}

func idle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	var cf clientFlags
	cf.register(fs)
	n := fs.Int("n", 1000, "connections to open")
	fs.Parse(args)
	cfg, err := cf.config()
	if err != nil {
		return err
	}
	// Resumption off as above: every connection a full, verified handshake.
	conns := make([]*tls.Conn, 0, *n)
	for i := 0; i < *n; i++ {
		c, err := dial(context.Background(), cf.addr, cfg)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
	}
	fmt.Println("ready", len(conns))
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return nil
}
