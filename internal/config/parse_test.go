package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

func TestParseSharedFiles(t *testing.T) {
	shared := sharedDir(t)
	var files []string
	for _, pat := range []string{"scenarios/*/*.yaml", "istio-samples/*.yaml"} {
		m, err := filepath.Glob(filepath.Join(shared, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 30 {
		t.Fatalf("found %d shared YAML files, want at least 30", len(files))
	}
	istio := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(shared, f)
		res, err := Parse(data, rel)
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		for _, e := range res.Errors {
			t.Errorf("%v", e)
		}
		for _, s := range res.Skipped {
			if s.Reason != "not an Istio resource" {
				t.Errorf("%s: skipped %s %s: %s", s.Source, s.Kind, s.Name, s.Reason)
			}
		}
		if len(res.Skipped) != len(res.Kube) {
			t.Errorf("%s: got %d skipped and %d kube objects, want equal", rel, len(res.Skipped), len(res.Kube))
		}
		istio += len(res.Resources)
	}
	if istio < 50 {
		t.Errorf("got %d Istio resources in the shared files, want at least 50", istio)
	}
}

const multiDoc = `# leading comment
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs-bill-service
  namespace: istio-demo
  labels: {app: bill}
spec:
  hosts: [bill-service]
  http:
  - timeout: 500ms
    retries: {attempts: 3, per_try_timeout: 1.5s}
    route:
    - destination: {host: bill-service, subset: v1}
---
---
apiVersion: v1
kind: Service
metadata:
  name: bill-service
spec:
  ports: [{port: 9999, name: http}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dest}
spec:
  host: bill-service
  trafficPolicy:
    connectionPool:
      tcp: {connectTimeout: 1m}
...
`

func TestParseMultiDocument(t *testing.T) {
	res, err := ParseWithOptions([]byte(multiDoc), "bill/all.yaml", ParseOptions{DefaultNamespace: "team"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) != 0 {
		t.Fatalf("got errors %v, want none", res.Errors)
	}
	if got, want := len(res.Resources), 2; got != want {
		t.Fatalf("got %d resources, want %d", got, want)
	}
	vs, dr := res.Resources[0], res.Resources[1]
	for _, tc := range []struct{ name, got, want string }{
		{"vs kind", vs.Kind, KindVirtualService},
		{"vs apiVersion", vs.APIVersion, "networking.istio.io/v1alpha3"},
		{"vs namespace", vs.Namespace, "istio-demo"},
		{"vs source", vs.Source, "bill/all.yaml#1"},
		{"vs label", vs.Labels["app"], "bill"},
		{"dr namespace (default)", dr.Namespace, "team"},
		{"dr source", dr.Source, "bill/all.yaml#3"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}
	spec, ok := vs.Spec.(*networking.VirtualService)
	if !ok {
		t.Fatalf("got spec %T, want *VirtualService", vs.Spec)
	}
	h := spec.GetHttp()[0]
	if got, want := h.GetTimeout().AsDuration(), 500*time.Millisecond; got != want {
		t.Errorf("timeout: got %v, want %v", got, want)
	}
	if got, want := h.GetRetries().GetPerTryTimeout().AsDuration(), 1500*time.Millisecond; got != want {
		t.Errorf("perTryTimeout (snake_case): got %v, want %v", got, want)
	}
	if got, want := h.GetRoute()[0].GetDestination().GetSubset(), "v1"; got != want {
		t.Errorf("subset: got %q, want %q", got, want)
	}
	drSpec := dr.Spec.(*networking.DestinationRule)
	if got, want := drSpec.GetTrafficPolicy().GetConnectionPool().GetTcp().GetConnectTimeout().AsDuration(), time.Minute; got != want {
		t.Errorf("connectTimeout: got %v, want %v", got, want)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Kind != "Service" || res.Skipped[0].Namespace != "team" || res.Skipped[0].Source != "bill/all.yaml#2" {
		t.Errorf("got skipped %+v, want the Service bill-service in team from #2", res.Skipped)
	}
	if len(res.Kube) != 1 || res.Kube[0].Name != "bill-service" || !strings.Contains(string(res.Kube[0].Raw), `"port":9999`) {
		t.Errorf("got kube objects %+v, want the Service with its raw JSON", res.Kube)
	}
}

func TestParseJSONAndList(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantKinds []string
		wantSrc   []string
	}{
		{"json object", `{"apiVersion":"networking.istio.io/v1","kind":"Gateway","metadata":{"name":"gw"},"spec":{"selector":{"istio":"ingressgateway"},"servers":[{"port":{"number":80,"name":"http","protocol":"HTTP"},"hosts":["*"]}]}}`,
			[]string{KindGateway}, []string{"in#1"}},
		{"kubectl list", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: security.istio.io/v1\n  kind: PeerAuthentication\n  metadata: {name: default, namespace: istio-system}\n  spec: {mtls: {mode: STRICT}}\n- apiVersion: networking.istio.io/v1beta1\n  kind: Sidecar\n  metadata: {name: default}\n  spec:\n    egress:\n    - hosts: [\"./*\"]\n",
			[]string{KindPeerAuthentication, KindSidecar}, []string{"in#1[0]", "in#1[1]"}},
		{"empty input", "", nil, nil},
		{"comments only", "# nothing\n---\n# still nothing\n", nil, nil},
		{"null document", "---\nnull\n---\n", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Parse([]byte(tc.in), "in")
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Errors) > 0 {
				t.Fatalf("got errors %v, want none", res.Errors)
			}
			var kinds, srcs []string
			for _, r := range res.Resources {
				kinds = append(kinds, r.Kind)
				srcs = append(srcs, r.Source)
			}
			if fmt.Sprint(kinds) != fmt.Sprint(tc.wantKinds) || fmt.Sprint(srcs) != fmt.Sprint(tc.wantSrc) {
				t.Errorf("got kinds %v sources %v, want %v %v", kinds, srcs, tc.wantKinds, tc.wantSrc)
			}
		})
	}
}

func TestParseErrorsKeepGoing(t *testing.T) {
	in := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  htp: []\n---\nkey: [unclosed\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ok}\nspec: {host: a}\n---\napiVersion: networking.istio.io/v1\nkind: EnvoyFilter\nmetadata: {name: ef}\nspec: {}\n"
	res, err := Parse([]byte(in), "f.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range res.Errors {
		got = append(got, e.Error())
	}
	want := []string{
		"f.yaml#1 VirtualService default/a: spec.htp: unknown field; VirtualService accepts hosts, gateways, http, tls, tcp, exportTo",
		"f.yaml#2: invalid YAML at line 8: did not find expected ',' or ']'",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got errors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(res.Resources) != 1 || res.Resources[0].Name != "ok" || res.Resources[0].Source != "f.yaml#3" {
		t.Errorf("got resources %v, want only DestinationRule ok from #3", res.Resources)
	}
	if len(res.Skipped) != 1 || res.Skipped[0].Kind != "EnvoyFilter" || !strings.Contains(res.Skipped[0].Reason, "not supported") {
		t.Errorf("got skipped %+v, want the EnvoyFilter as unsupported", res.Skipped)
	}
	res, _ = Parse([]byte("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\n---\napiVersion: extensions.istio.io/v1alpha1\nkind: Mystery\nmetadata: {name: m}\n"), "g.yaml")
	if len(res.Errors) != 0 || len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0].Reason, "extensions.istio.io is not read") {
		t.Errorf("got errors %v skipped %+v, want the Mystery skipped", res.Errors, res.Skipped)
	}
	if len(res.Resources) != 1 || res.Resources[0].Kind != KindTelemetry {
		t.Errorf("got resources %v, want the Telemetry parsed", res.Resources)
	}
}
