package translate

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/registry/serviceentry"
)

var update = flag.Bool("update", false, "rewrite testdata/*/output.yaml from the current translation")

// render is the stable YAML form of an Output: protojson with proto field
// names, re-encoded through sigs.k8s.io/yaml, which sorts keys.
func render(t testing.TB, out *Output) []byte {
	t.Helper()
	doc := map[string][]any{}
	add := func(kind string, m proto.Message) {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			t.Fatalf("marshal %s: %v", kind, err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("unmarshal %s: %v", kind, err)
		}
		doc[kind] = append(doc[kind], v)
	}
	for _, c := range out.Clusters {
		add("clusters", c)
	}
	for _, e := range out.Endpoints {
		add("endpoints", e)
	}
	for _, l := range out.Listeners {
		add("listeners", l)
	}
	for _, r := range out.Routes {
		add("routes", r)
	}
	for _, s := range out.Secrets {
		add("secrets", s)
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return b
}

// proxySpec is testdata/<case>/proxy.yaml: the xDS node a proxy would send
// and the mesh options.
type proxySpec struct {
	ID          string            `json:"id"`
	Labels      map[string]string `json:"labels"`
	InstanceIPs string            `json:"instanceIPs"`
	Generator   string            `json:"generator"`
	Network     string            `json:"network"`
	Cluster     string            `json:"cluster"`
	Locality    struct {
		Region  string `json:"region"`
		Zone    string `json:"zone"`
		SubZone string `json:"subZone"`
	} `json:"locality"`
	Mesh struct {
		OutboundTrafficPolicy string `json:"outboundTrafficPolicy"`
		AccessLogFile         string `json:"accessLogFile"`
		AccessLogEncoding     string `json:"accessLogEncoding"`
		// MeshConfig is Istio's MeshConfig (extensionProviders,
		// defaultProviders, defaultConfig.tracing).
		MeshConfig json.RawMessage `json:"meshConfig"`
	} `json:"mesh"`
	// Credentials maps "namespace/name" to file names (in the case
	// directory) of a certificate chain and key.
	Credentials map[string]struct {
		Cert string `json:"cert"`
		Key  string `json:"key"`
	} `json:"credentials"`
	// JWKS maps a jwksUri to the file (in the case directory) holding
	// the document trellisd fetched from it.
	JWKS map[string]string `json:"jwks"`
}

func (p proxySpec) node() *corev3.Node {
	md := map[string]*structpb.Value{}
	if len(p.Labels) > 0 {
		md["LABELS"] = stringMapStruct(p.Labels)
	}
	if p.InstanceIPs != "" {
		md["INSTANCE_IPS"] = structpb.NewStringValue(p.InstanceIPs)
	}
	if p.Generator != "" {
		md["GENERATOR"] = structpb.NewStringValue(p.Generator)
	}
	if p.Network != "" {
		md["NETWORK"] = structpb.NewStringValue(p.Network)
	}
	if p.Cluster != "" {
		md["CLUSTER_ID"] = structpb.NewStringValue(p.Cluster)
	}
	n := &corev3.Node{Id: p.ID, Metadata: &structpb.Struct{Fields: md}}
	if p.Locality.Region != "" {
		n.Locality = &corev3.Locality{Region: p.Locality.Region, Zone: p.Locality.Zone, SubZone: p.Locality.SubZone}
	}
	return n
}

// loadCase reads testdata/<name>: input.yaml (and any other *.yaml but
// proxy.yaml and output.yaml) and proxy.yaml, and builds the Input the way
// trellisd does in local mode.
func loadCase(t testing.TB, dir string) Input {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var inputs []string
	for _, f := range files {
		switch filepath.Base(f) {
		case "proxy.yaml", "output.yaml":
		default:
			inputs = append(inputs, f)
		}
	}
	sort.Strings(inputs)
	// A Store, as trellisd uses, so that Kubernetes objects (Secrets) beside
	// the Istio resources reach the snapshot.
	store := config.NewStore()
	for _, f := range inputs {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := config.Parse(data, f)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		for _, e := range res.Errors {
			t.Errorf("parse %s: %v", f, e)
		}
		store.SetAll(f, res.Resources, res.Kube)
	}
	return buildInput(t, store.Snapshot(), dir)
}

func buildInput(t testing.TB, cfg *config.Snapshot, dir string) Input {
	t.Helper()
	var ps proxySpec
	data, err := os.ReadFile(filepath.Join(dir, "proxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &ps); err != nil {
		t.Fatalf("%s/proxy.yaml: %v", dir, err)
	}
	p, err := ProxyFromNode(ps.node())
	if err != nil {
		t.Fatalf("%s/proxy.yaml: %v", dir, err)
	}
	mesh := DefaultMesh()
	switch ps.Mesh.OutboundTrafficPolicy {
	case "", "ALLOW_ANY":
	case "REGISTRY_ONLY":
		mesh.OutboundAllowAny = false
	default:
		t.Fatalf("%s/proxy.yaml: mesh.outboundTrafficPolicy %q", dir, ps.Mesh.OutboundTrafficPolicy)
	}
	mesh.AccessLogFile = ps.Mesh.AccessLogFile
	mesh.AccessLogEncoding = ps.Mesh.AccessLogEncoding
	if len(ps.Mesh.MeshConfig) > 0 {
		mc := &meshv1alpha1.MeshConfig{}
		if err := protojson.Unmarshal(ps.Mesh.MeshConfig, mc); err != nil {
			t.Fatalf("%s/proxy.yaml: mesh.meshConfig: %v", dir, err)
		}
		mesh.ApplyMeshConfig(mc)
	}
	in := Input{Proxy: p, Config: cfg, Registry: serviceentry.Build(cfg, mesh.DomainSuffix), Mesh: mesh}
	for k, c := range ps.Credentials {
		cert, err := os.ReadFile(filepath.Join(dir, c.Cert))
		if err != nil {
			t.Fatal(err)
		}
		key, err := os.ReadFile(filepath.Join(dir, c.Key))
		if err != nil {
			t.Fatal(err)
		}
		if in.Credentials == nil {
			in.Credentials = map[string]*Credential{}
		}
		in.Credentials[k] = &Credential{CertChain: cert, PrivateKey: key}
	}
	for uri, f := range ps.JWKS {
		doc, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if in.JWKS == nil {
			in.JWKS = map[string]string{}
		}
		in.JWKS[uri] = string(doc)
	}
	return in
}

func caseDirs(t testing.TB) []string {
	t.Helper()
	dirs, err := filepath.Glob("testdata/*/proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no testdata/*/proxy.yaml")
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	return dirs
}

// TestGolden translates every testdata case and compares the YAML with
// output.yaml (go test -update rewrites them).
func TestGolden(t *testing.T) {
	for _, dir := range caseDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			in := loadCase(t, dir)
			out := Translate(in)
			checkConsistent(t, out)
			got := render(t, out)
			golden := filepath.Join(dir, "output.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from the translation (go test -update to refresh):\n%s", golden, firstDiff(string(got), string(want)))
			}
		})
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: got %q, want %q", i+1, gl, wl)
		}
	}
	return "(equal)"
}
