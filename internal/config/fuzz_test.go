package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/config/validate"
)

// FuzzParse drives arbitrary bytes through the YAML-to-config path:
// Parse must never panic or fail as a whole, every problem must be an
// *Issue, every resource (and the set of them) must validate without
// panicking, and every resource must survive a round trip (render as
// JSON, parse again, get an equal spec).
func FuzzParse(f *testing.F) {
	for _, pat := range []string{"../../../shared/scenarios/*/*.yaml", "../../../shared/istio-samples/*.yaml"} {
		files, _ := filepath.Glob(pat)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	f.Add([]byte("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  http:\n  - timeout: 500ms\n    route:\n    - destination: {host: a}\n      weight: 100\n"))
	f.Add([]byte(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"p"},"spec":{"portLevelMtls":{"80":{"mode":"STRICT"}}}}]}`))
	f.Add([]byte("---\n- a\n---\n: :\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := config.Parse(data, "fuzz.yaml")
		if err != nil {
			t.Fatalf("Parse failed as a whole: %v", err)
		}
		for _, e := range res.Errors {
			var is *config.Issue
			if !errors.As(e, &is) {
				t.Fatalf("error %v is %T, want *config.Issue", e, e)
			}
		}
		for _, r := range res.Resources {
			if r.Spec == nil || r.Name == "" || r.Namespace == "" {
				t.Fatalf("resource %+v lacks spec, name or namespace", r)
			}
			_ = validate.Resource(r)
			roundTrip(t, r)
		}
		for _, r := range res.Rejected {
			if v := validate.Resource(r); r.Spec == nil {
				t.Fatalf("rejected resource without spec: %+v %v", r, v)
			}
		}
		snap := config.NewSnapshot(res.Resources)
		_ = validate.Snapshot(snap, validate.HostsFromConfig(snap, res.Kube, ""))
	})
}

func roundTrip(t *testing.T, r *config.Resource) {
	spec, err := protojson.Marshal(r.Spec)
	if err != nil {
		t.Fatalf("marshal %s: %v", r.Display(), err)
	}
	var specObj any
	if err := yaml.Unmarshal(spec, &specObj); err != nil {
		t.Fatalf("re-read spec JSON: %v", err)
	}
	doc, err := yaml.Marshal(map[string]any{
		"apiVersion": r.APIVersion, "kind": r.Kind,
		"metadata": map[string]any{"name": r.Name, "namespace": r.Namespace},
		"spec":     specObj,
	})
	if err != nil {
		t.Fatalf("render %s: %v", r.Display(), err)
	}
	again, err := config.Parse(doc, "again.yaml")
	if err != nil || len(again.Errors) > 0 || len(again.Resources) != 1 {
		t.Fatalf("round trip of %s:\n%s\ngot errors %v", r.Display(), doc, again.Errors)
	}
	if !proto.Equal(again.Resources[0].Spec, r.Spec) {
		t.Fatalf("round trip of %s changed the spec:\n%s", r.Display(), doc)
	}
}
