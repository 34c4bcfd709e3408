package shift

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"
)

func kubeVS(t *testing.T, text string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(text), &m); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion("networking.istio.io/v1")
	u.SetNamespace("default")
	return u
}

func kubeWeights(t *testing.T, u *unstructured.Unstructured) map[string]int64 {
	t.Helper()
	http, _, _ := unstructured.NestedSlice(u.Object, "spec", "http")
	out := map[string]int64{}
	for _, d := range http[0].(map[string]any)["route"].([]any) {
		dm := d.(map[string]any)
		s, _, _ := unstructured.NestedString(dm, "destination", "subset")
		w, _ := dm["weight"]
		out[s] = toInt64(w)
	}
	return out
}

// TestKubeApplier rewrites the scenario's VirtualService through a dynamic
// client, as `trellis shift --kube` does.
func TestKubeApplier(t *testing.T) {
	text := `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: worker-virtual-service
spec:
  hosts: [worker-service]
  gateways: [mesh]
  http:
  - route:
    - destination: {host: worker-service.default.svc.cluster.local, subset: primary, port: {number: 80}}
      weight: 50
    - destination: {host: worker-service.default.svc.cluster.local, subset: burst, port: {number: 80}}
      weight: 50
`
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{VirtualServiceResource: "VirtualServiceList"}, kubeVS(t, text))
	a := &KubeApplier{Client: client}
	ctx := context.Background()
	get := func() *unstructured.Unstructured {
		u, err := client.Resource(VirtualServiceResource).Namespace("default").Get(ctx, "worker-virtual-service", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	steps := []struct {
		subset      string
		wantChanged bool
		want        map[string]int64
	}{
		{"burst", true, map[string]int64{"primary": 0, "burst": 100}},
		{"burst", false, map[string]int64{"primary": 0, "burst": 100}},
		{"primary", true, map[string]int64{"primary": 100, "burst": 0}},
	}
	for i, s := range steps {
		changed, err := a.Apply(ctx, worker, s.subset)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if changed != s.wantChanged {
			t.Errorf("step %d (%s): got changed %v, want %v", i, s.subset, changed, s.wantChanged)
		}
		u := get()
		got := kubeWeights(t, u)
		for k, v := range s.want {
			if got[k] != v {
				t.Errorf("step %d: weight of %s: got %d, want %d", i, k, got[k], v)
			}
		}
		if h, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "gateways"); len(h) != 1 || h[0] != "mesh" {
			t.Errorf("step %d: spec.gateways: got %v, want [mesh]", i, h)
		}
	}

	if _, err := a.Apply(ctx, worker, "overflow"); err == nil || !strings.Contains(err.Error(), `subset "overflow"`) {
		t.Errorf("unknown subset: got %v, want an error naming it", err)
	}
	if _, err := a.Apply(ctx, Ref{Namespace: "default", Name: "nope"}, "burst"); err == nil || !strings.Contains(err.Error(), "get virtual service default/nope") {
		t.Errorf("missing object: got %v, want a get error", err)
	}
}
