package shift

import (
	"context"
	"os"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// installVirtualServiceCRD creates Trellis's VirtualService CRD and waits
// until the API server serves it.
func installVirtualServiceCRD(t *testing.T, env *kubetest.Env) {
	t.Helper()
	ctx := context.Background()
	crds := env.Clients.Ext.ApiextensionsV1().CustomResourceDefinitions()
	var crd *apiextv1.CustomResourceDefinition
	for _, c := range install.CRDs() {
		if c.Name == "virtualservices.networking.istio.io" {
			crd = c
		}
	}
	if crd == nil {
		t.Fatal("install.CRDs has no virtualservices.networking.istio.io")
	}
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil && !isAlreadyExists(err) {
		t.Fatalf("create CRD: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := crds.Get(ctx, crd.Name, metav1.GetOptions{})
		if err == nil {
			for _, c := range got.Status.Conditions {
				if c.Type == apiextv1.Established && c.Status == apiextv1.ConditionTrue {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRD %s not established after 30 s: %v", crd.Name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKubeApplierAgainstAPIServer runs the controller with KubeApplier
// against a real kube-apiserver: the scenario's VirtualService, created as
// networking.istio.io/v1alpha3 like `kubectl apply -f`, is shifted to
// burst and back, and other writers' changes made meanwhile survive.
func TestKubeApplierAgainstAPIServer(t *testing.T) {
	env := kubetest.Shared(t)
	installVirtualServiceCRD(t, env)
	ctx := kubetest.Context(t)

	vs := kubeVS(t, `apiVersion: networking.istio.io/v1alpha3
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
`)
	alpha := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1alpha3", Resource: "virtualservices"}
	vs.SetAPIVersion("networking.istio.io/v1alpha3")
	client := env.Clients.Dynamic
	if _, err := client.Resource(alpha).Namespace("default").Create(ctx, vs, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create virtual service: %v", err)
	}
	t.Cleanup(func() {
		_ = client.Resource(alpha).Namespace("default").Delete(context.Background(), "worker-virtual-service", metav1.DeleteOptions{})
	})
	get := func() *unstructured.Unstructured {
		t.Helper()
		u, err := client.Resource(alpha).Namespace("default").Get(ctx, "worker-virtual-service", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	rates := &seqSampler{rates: []float64{30, 12, 3}}
	c, err := New(Options{
		Sampler: rates, Up: 15, Down: 10, VirtualService: worker,
		BurstSubset: "burst", NaturalSubset: "primary",
		Applier: &KubeApplier{Client: client},
	})
	if err != nil {
		t.Fatal(err)
	}

	d := c.Step(ctx)
	if d.Err != nil || !d.Changed || !d.Wrote {
		t.Fatalf("30 req/s: got %+v, want a written shift", d)
	}
	u := get()
	if w := kubeWeights(t, u); w["primary"] != 0 || w["burst"] != 100 {
		t.Errorf("after burst: got %v, want primary 0, burst 100", w)
	}
	if mf := u.GetManagedFields(); len(mf) == 0 || mf[len(mf)-1].Manager != "trellis-shift" {
		t.Errorf("managedFields: got %+v, want the last writer trellis-shift", mf)
	}
	rv := u.GetResourceVersion()

	// Someone else edits the object; the next shift must keep the edit.
	u.SetLabels(map[string]string{"team": "workers"})
	if _, err := client.Resource(alpha).Namespace("default").Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	if d := c.Step(ctx); d.Err != nil || d.Changed {
		t.Fatalf("12 req/s: got %+v, want no change", d)
	}
	if get().GetResourceVersion() == rv {
		t.Fatal("the other writer's update did not land")
	}

	if d := c.Step(ctx); d.Err != nil || !d.Changed || c.State() != Natural {
		t.Fatalf("3 req/s: got %+v, want a shift to natural", d)
	}
	u = get()
	if w := kubeWeights(t, u); w["primary"] != 100 || w["burst"] != 0 {
		t.Errorf("after natural: got %v, want primary 100, burst 0", w)
	}
	if got := u.GetLabels()["team"]; got != "workers" {
		t.Errorf("label team: got %q, want workers (another writer's edit was lost)", got)
	}
	if gw, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "gateways"); len(gw) != 1 || gw[0] != "mesh" {
		t.Errorf("spec.gateways: got %v, want [mesh]", gw)
	}
}

func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }
