package shift

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
)

// VirtualServiceResource is the API resource KubeApplier reads and writes
// (every networking version is served with the same schema).
var VirtualServiceResource = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}

// KubeApplier rewrites a VirtualService object in a cluster. It reads the
// object, sets spec.http[*].route[*].weight and updates it with the
// object's resourceVersion, retrying on conflicts, so edits other clients
// make between the read and the write are never overwritten.
type KubeApplier struct {
	Client dynamic.Interface
	// FieldManager names the writer in managedFields; default "trellis-shift".
	FieldManager string
}

// Apply implements Applier.
func (a *KubeApplier) Apply(ctx context.Context, ref Ref, subset string) (bool, error) {
	res := a.Client.Resource(VirtualServiceResource).Namespace(ref.Namespace)
	manager := a.FieldManager
	if manager == "" {
		manager = "trellis-shift"
	}
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj, err := res.Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("get virtual service %s: %w", ref, err)
		}
		ch, err := setWeights(obj, ref, subset)
		if err != nil {
			return err
		}
		if !ch {
			changed = false
			return nil
		}
		if _, err := res.Update(ctx, obj, metav1.UpdateOptions{FieldManager: manager}); err != nil {
			return fmt.Errorf("update virtual service %s: %w", ref, err)
		}
		changed = true
		return nil
	})
	return changed, err
}

// setWeights edits the object's spec.http[*].route[*].weight in place.
func setWeights(obj *unstructured.Unstructured, ref Ref, subset string) (bool, error) {
	http, found, err := unstructured.NestedSlice(obj.Object, "spec", "http")
	if err != nil {
		return false, fmt.Errorf("virtual service %s: spec.http: %w", ref, err)
	}
	if !found {
		return false, errNoTarget(ref, subset)
	}
	matched, changed := false, false
	for i, h := range http {
		hm, ok := h.(map[string]any)
		if !ok {
			continue
		}
		route, ok := hm["route"].([]any)
		if !ok {
			continue
		}
		subsets := make([]string, len(route))
		for j, d := range route {
			s, _, _ := unstructured.NestedString(asMap(d), "destination", "subset")
			subsets[j] = s
		}
		weights, ok, err := planRoute(subsets, subset)
		if err != nil {
			return false, fmt.Errorf("virtual service %s: spec.http[%d]: %w", ref, i, err)
		}
		if !ok {
			continue
		}
		matched = true
		for j, d := range route {
			dm := asMap(d)
			if dm == nil {
				return false, fmt.Errorf("virtual service %s: spec.http[%d].route[%d]: not an object", ref, i, j)
			}
			cur, has := dm["weight"]
			if !has && len(route) == 1 {
				continue
			}
			if has && toInt64(cur) == weights[j] {
				continue
			}
			dm["weight"] = weights[j]
			changed = true
		}
	}
	if !matched {
		return false, errNoTarget(ref, subset)
	}
	if !changed {
		return false, nil
	}
	if err := unstructured.SetNestedSlice(obj.Object, http, "spec", "http"); err != nil {
		return false, fmt.Errorf("virtual service %s: %w", ref, err)
	}
	return true, nil
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func toInt64(v any) int64 {
	switch n := v.(type) {
	case int64:
		return n
	case int:
		return int64(n)
	case int32:
		return int64(n)
	case float64:
		return int64(n)
	}
	return -1
}
