package kube

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

func installCRDs(t *testing.T, ctx context.Context, env *kubetest.Env) {
	t.Helper()
	s, err := install.Load(install.Options{Set: []string{"profile=minimal", "components.pilot.enabled=false"}})
	if err != nil {
		t.Fatal(err)
	}
	comps, err := install.Render(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := install.Apply(ctx, env.Clients, comps, install.ApplyOptions{}); err != nil {
		t.Fatalf("install CRDs: %v", err)
	}
}

func create(t *testing.T, ctx context.Context, env *kubetest.Env, doc string) {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	gvk := u.GroupVersionKind()
	res := strings.ToLower(gvk.Kind) + "s"
	r := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: res}
	if _, err := env.Clients.Dynamic.Resource(r).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create %s %s: %v", gvk.Kind, u.GetName(), err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const billVS = `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: vs-bill-service
  namespace: cfg-demo
spec:
  hosts:
  - bill-service
  http:
  - name: bill-service-route
    route:
    - destination:
        host: bill-service
        subset: v1
      weight: 90
    - destination:
        host: bill-service
        subset: v2
      weight: 10
`

const billDR = `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: dest-bill-service
  namespace: cfg-demo
spec:
  host: bill-service
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
`

const badVS = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs-bad
  namespace: cfg-demo
spec:
  hosts:
  - bill-service
  http:
  - route:
    - destination:
        host: bill-service
      weight: -5
`

// TestSourcePicksUpLateCRDs runs first: the CRDs are not installed yet
// when the source starts (trellisd started before `trellis install`
// finished), and are watched once they appear.
func TestSourcePicksUpLateCRDs(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := kubetest.Context(t)
	store := config.NewStore()
	src := New(env.Clients.Dynamic, env.Clients.Discovery, store, Options{Coalesce: 10 * time.Millisecond, Rediscover: 100 * time.Millisecond})
	if err := src.Start(ctx); err != nil {
		t.Fatalf("start without CRDs: %v", err)
	}
	if got := len(src.Watching()); got != 0 {
		t.Fatalf("watching %d kinds before the CRDs exist, want 0", got)
	}
	installCRDs(t, ctx, env)
	create(t, ctx, env, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: late\n")
	create(t, ctx, env, strings.ReplaceAll(billDR, "cfg-demo", "late"))
	waitFor(t, "the DestinationRule through a late informer", func() bool {
		return store.Snapshot().Get(config.Key{Kind: config.KindDestinationRule, Namespace: "late", Name: "dest-bill-service"}) != nil
	})
	// The CRDs are discovered as the API server publishes them, not all
	// in one rediscovery: every kind must be watched soon after.
	waitFor(t, fmt.Sprintf("informers for all %d kinds", len(config.Kinds())), func() bool {
		return len(src.Watching()) == len(config.Kinds())
	})
}

func TestSourceFromAPIServer(t *testing.T) {
	env := kubetest.Shared(t)
	ctx := kubetest.Context(t)
	installCRDs(t, ctx, env)
	create(t, ctx, env, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: cfg-demo\n")
	create(t, ctx, env, billVS)
	create(t, ctx, env, badVS)

	store := config.NewStore()
	src := New(env.Clients.Dynamic, env.Clients.Discovery, store, Options{Events: env.Clients.Kube, Coalesce: 10 * time.Millisecond})
	if err := src.Start(ctx); err != nil {
		t.Fatalf("start: %v", err)
	}
	if got := src.Watching()[config.KindVirtualService]; got != "v1" {
		t.Errorf("VirtualService watched at %q, want v1 (the newest served)", got)
	}
	snap := store.Snapshot()
	vs := snap.Get(config.Key{Kind: config.KindVirtualService, Namespace: "cfg-demo", Name: "vs-bill-service"})
	if vs == nil {
		t.Fatalf("bill-service VirtualService not in the store; have %d resources, invalid %v", snap.Len(), src.Invalid())
	}
	spec := vs.Spec.(*networking.VirtualService)
	if got := spec.Http[0].Route[0].Weight; got != 90 {
		t.Errorf("route[0].weight: got %d, want 90", got)
	}
	if snap.Get(config.Key{Kind: config.KindVirtualService, Namespace: "cfg-demo", Name: "vs-bad"}) != nil {
		t.Errorf("invalid VirtualService is in the store")
	}
	inv := src.Invalid()
	if len(inv) != 1 || !strings.Contains(inv[0], "VirtualService cfg-demo/vs-bad: spec.http[0].route[0].weight") {
		t.Errorf("invalid: got %q, want the bad VirtualService with its field path", inv)
	}
	waitFor(t, "warning event on vs-bad", func() bool {
		evs, err := env.Clients.Kube.CoreV1().Events("cfg-demo").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "vs-bad" && e.Reason == "InvalidConfig" && e.Type == "Warning" {
				return true
			}
		}
		return false
	})

	// A DestinationRule written as v1beta1 shows up.
	create(t, ctx, env, billDR)
	waitFor(t, "DestinationRule", func() bool {
		return store.Snapshot().Get(config.Key{Kind: config.KindDestinationRule, Namespace: "cfg-demo", Name: "dest-bill-service"}) != nil
	})

	// Deleting the VirtualService removes it; the DestinationRule stays.
	r := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1beta1", Resource: "virtualservices"}
	if err := env.Clients.Dynamic.Resource(r).Namespace("cfg-demo").Delete(ctx, "vs-bill-service", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "VirtualService removal", func() bool {
		s := store.Snapshot()
		return s.Get(vs.Key()) == nil && s.Get(config.Key{Kind: config.KindDestinationRule, Namespace: "cfg-demo", Name: "dest-bill-service"}) != nil
	})
	if err := env.Clients.Dynamic.Resource(r).Namespace("cfg-demo").Delete(ctx, "vs-bad", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "invalid list to clear", func() bool { return len(src.Invalid()) == 0 })
}
