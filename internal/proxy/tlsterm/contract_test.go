package tlsterm

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// goldenTLS is what a translator golden file holds for downstream TLS: the
// filter chains' transport sockets with their server names, and secrets.
type goldenTLS struct {
	chains  []goldenChain
	secrets map[string]*tlsv3.Secret
}

type goldenChain struct {
	path        string
	serverNames []string
	socket      *corev3.TransportSocket
	mesh        bool // an inbound mesh mTLS chain (selected by ALPN istio)
}

func readGolden(t *testing.T, file string) goldenTLS {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("read the translator's golden output: %v", err)
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Listeners []struct {
			Name         string `json:"name"`
			FilterChains []struct {
				Match struct {
					ServerNames []string `json:"server_names"`
					ALPN        []string `json:"application_protocols"`
				} `json:"filter_chain_match"`
				TransportSocket json.RawMessage `json:"transport_socket"`
			} `json:"filter_chains"`
		} `json:"listeners"`
		Secrets []json.RawMessage `json:"secrets"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		t.Fatal(err)
	}
	g := goldenTLS{secrets: map[string]*tlsv3.Secret{}}
	for _, l := range doc.Listeners {
		for i, fc := range l.FilterChains {
			if len(fc.TransportSocket) == 0 {
				continue
			}
			ts := &corev3.TransportSocket{}
			if err := protojson.Unmarshal(fc.TransportSocket, ts); err != nil {
				t.Fatalf("listener %s chain %d transport_socket: %v", l.Name, i, err)
			}
			g.chains = append(g.chains, goldenChain{
				path:        fmt.Sprintf("listener %q.filter_chains[%d].transport_socket", l.Name, i),
				serverNames: fc.Match.ServerNames,
				socket:      ts,
				mesh:        slices.Contains(fc.Match.ALPN, "istio"),
			})
		}
	}
	for _, s := range doc.Secrets {
		sec := &tlsv3.Secret{}
		if err := protojson.Unmarshal(s, sec); err != nil {
			t.Fatalf("secret: %v", err)
		}
		g.secrets[sec.GetName()] = sec
	}
	return g
}

// TestTranslatorGoldenContract compiles every downstream TLS context the
// translator's golden files hold (the seam between trellisd and
// trellis-proxy), and for the https-gateway scenario with its Secret
// completes a real handshake by SNI with the secret's certificate.
func TestTranslatorGoldenContract(t *testing.T) {
	dir := filepath.Join("..", "..", "xds", "translate", "testdata")
	files, err := filepath.Glob(filepath.Join(dir, "*", "output.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no translator golden files under %s (%v)", dir, err)
	}
	handshakes := 0
	for _, f := range files {
		g := readGolden(t, f)
		if len(g.chains) == 0 {
			continue
		}
		t.Run(filepath.Base(filepath.Dir(f)), func(t *testing.T) {
			store := NewStore()
			if err := store.Apply(g.secrets); err != nil {
				t.Fatalf("secrets: %v", err)
			}
			for _, ch := range g.chains {
				c, err := CompileTransportSocket(ch.path, ch.socket, store)
				if err != nil {
					t.Fatalf("compile: %v", err)
				}
				if c == nil {
					continue
				}
				// Mesh mTLS chains of TCP ports negotiate no ALPN.
				if got := c.ALPN(); (!ch.mesh || len(got) > 0) && (len(got) != 2 || got[0] != "h2" || got[1] != "http/1.1") {
					t.Errorf("%s: ALPN %v, want [h2 http/1.1]", ch.path, got)
				}
				ready := true
				for _, n := range c.SecretNames() {
					if store.get(n) == nil {
						ready = false
					}
				}
				if !ready || len(ch.serverNames) == 0 {
					continue
				}
				want := store.Certificate(c.SecretNames()[0])
				cfg := &tls.Config{
					ServerName: ch.serverNames[0], NextProtos: []string{"h2", "http/1.1"},
					// The golden secret is self-signed: check it is exactly the one served.
					InsecureSkipVerify: true,
					VerifyConnection: func(cs tls.ConnectionState) error {
						if !bytes.Equal(cs.PeerCertificates[0].Raw, want.Leaf.Raw) {
							return errors.New("served certificate is not the secret's")
						}
						return cs.PeerCertificates[0].VerifyHostname(ch.serverNames[0])
					},
				}
				if c.requireClient {
					// MUTUAL: a client without a certificate is refused.
					if _, err := dial(serve(t, c), cfg); err == nil {
						t.Errorf("%s: a client without a certificate completed the handshake; the context requires one", ch.path)
					}
					continue
				}
				cs, err := dial(serve(t, c), cfg)
				if err != nil {
					t.Fatalf("%s: handshake for %s: %v", ch.path, ch.serverNames[0], err)
				}
				if cs.NegotiatedProtocol != "h2" {
					t.Errorf("ALPN: got %q, want h2", cs.NegotiatedProtocol)
				}
				handshakes++
			}
		})
	}
	if handshakes == 0 {
		t.Error("no golden case had a downstream TLS context with its secret; want at least https-gateway-secret")
	}
}
