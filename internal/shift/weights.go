package shift

import (
	"fmt"
	"strings"
)

// Ref names the VirtualService a Controller rewrites.
type Ref struct {
	Namespace string
	Name      string
}

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// ParseRef reads "namespace/name" or "name" (namespace "default").
func ParseRef(s string) (Ref, error) {
	ns, name, found := strings.Cut(s, "/")
	if !found {
		ns, name = "default", s
	}
	if ns == "" || name == "" || strings.Contains(name, "/") {
		return Ref{}, fmt.Errorf("virtual service %q: want namespace/name, e.g. default/worker-virtual-service", s)
	}
	return Ref{Namespace: ns, Name: name}, nil
}

// planRoute computes the weights that send all of one route's traffic to
// target: 100 for the destination with subset target, 0 for the others.
// subsets holds each destination's subset in order. ok is false when no
// destination of the route has subset target (the route is left alone).
func planRoute(subsets []string, target string) (weights []int64, ok bool, err error) {
	at := -1
	for i, s := range subsets {
		if s != target {
			continue
		}
		if at >= 0 {
			return nil, false, fmt.Errorf("route[%d] and route[%d] both have subset %q; the shift target must be one destination", at, i, target)
		}
		at = i
	}
	if at < 0 {
		return nil, false, nil
	}
	weights = make([]int64, len(subsets))
	weights[at] = 100
	return weights, true, nil
}

// errNoTarget says a VirtualService has no route to the subset.
func errNoTarget(ref Ref, subset string) error {
	return fmt.Errorf("virtual service %s has no spec.http[].route[] destination with subset %q; add one (weight 0) or fix --burst-subset/--natural-subset", ref, subset)
}
