package cluster

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

func sdsUpstreamTLS(t *testing.T, c *clusterv3.Cluster) bool {
	ts := c.GetTransportSocket()
	if ts.GetName() != tlsTransportSocket {
		return false
	}
	var uc tlsv3.UpstreamTlsContext
	if err := ts.GetTypedConfig().UnmarshalTo(&uc); err != nil {
		t.Fatalf("cluster %q: transport socket: %v", c.GetName(), err)
	}
	ctc := uc.GetCommonTlsContext()
	for _, sc := range ctc.GetTlsCertificateSdsSecretConfigs() {
		if sc.GetName() != ownCertSecret {
			return true
		}
	}
	return ctc.GetValidationContextSdsSecretConfig() != nil && ctc.GetValidationContextSdsSecretConfig().GetName() != ownRootSecret
}

// TestTranslateContract feeds every cluster and endpoint trellisd's
// translation produces for its golden cases (the data files of
// internal/xds/translate/testdata/*/output.yaml) through the cluster
// manager: all must be accepted, except upstream TLS from SDS secrets
// other than the proxy's own `default` and `ROOTCA` (credentialName),
// which is NACKed.
func TestTranslateContract(t *testing.T) {
	files, _ := filepath.Glob("../../xds/translate/testdata/*/output.yaml")
	if len(files) == 0 {
		t.Skip("no translation goldens found next to this package")
	}
	for _, f := range files {
		name := filepath.Base(filepath.Dir(f))
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			js, err := yaml.YAMLToJSON(b)
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Clusters  []json.RawMessage `json:"clusters"`
				Endpoints []json.RawMessage `json:"endpoints"`
			}
			if err := json.Unmarshal(js, &out); err != nil {
				t.Fatal(err)
			}
			var cs []*clusterv3.Cluster
			for i, raw := range out.Clusters {
				c := &clusterv3.Cluster{}
				if err := protojson.Unmarshal(raw, c); err != nil {
					t.Fatalf("clusters[%d]: %v", i, err)
				}
				if sdsUpstreamTLS(t, c) {
					// DestinationRule tls.credentialName: NACKed with the
					// fix, as sidecars are sent no such secrets.
					if _, err := Compile(c); err == nil || !strings.Contains(err.Error(), "tls.credentialName") {
						t.Errorf("cluster %q with SDS upstream TLS: got %v, want a rejection naming tls.credentialName", c.GetName(), err)
					}
					continue
				}
				cs = append(cs, c)
			}
			var es []*endpointv3.ClusterLoadAssignment
			for i, raw := range out.Endpoints {
				e := &endpointv3.ClusterLoadAssignment{}
				if err := protojson.Unmarshal(raw, e); err != nil {
					t.Fatalf("endpoints[%d]: %v", i, err)
				}
				es = append(es, e)
			}
			m := NewManager(Options{Resolver: noDNS})
			defer m.Close()
			if err := m.UpdateClusters(cs); err != nil {
				t.Fatalf("clusters rejected: %v", err)
			}
			if err := m.UpdateEndpoints(es); err != nil {
				t.Fatalf("endpoints rejected: %v", err)
			}
			for _, c := range m.All() {
				if c.Type == TypeEDS && !c.Warm() && len(es) > 0 {
					// Every EDS cluster of a case has its assignment.
					found := false
					for _, e := range es {
						found = found || e.GetClusterName() == c.EDSServiceName
					}
					if found {
						t.Errorf("cluster %q: got cold with its assignment present", c.Name)
					}
				}
			}
		})
	}
}
