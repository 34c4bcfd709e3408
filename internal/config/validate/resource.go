package validate

import (
	"fmt"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
	telemetry "istio.io/api/telemetry/v1alpha1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/trellis-mesh/trellis/internal/config"
)

// Resource checks one resource on its own, as Istio's validating webhook
// does. It never modifies r.
func Resource(r *config.Resource) Result {
	c := newChecker(r)
	if errs := validation.IsDNS1123Subdomain(r.Name); len(errs) > 0 {
		c.errorf("metadata.name", "%q is not a valid name: %s", r.Name, errs[0])
	}
	if r.Namespace != "" {
		if errs := validation.IsDNS1123Label(r.Namespace); len(errs) > 0 {
			c.errorf("metadata.namespace", "%q is not a valid namespace: %s", r.Namespace, errs[0])
		}
	}
	c.checkLabels("metadata.labels", r.Labels)
	switch spec := r.Spec.(type) {
	case *networking.VirtualService:
		c.virtualService(spec)
	case *networking.DestinationRule:
		c.destinationRule(spec)
	case *networking.Gateway:
		c.gateway(spec)
	case *networking.ServiceEntry:
		c.serviceEntry(spec)
	case *networking.WorkloadEntry:
		c.workloadEntry("spec", spec, false)
	case *networking.WorkloadGroup:
		c.workloadGroup(spec)
	case *networking.Sidecar:
		c.sidecar(spec)
	case *security.PeerAuthentication:
		c.peerAuthentication(spec)
	case *security.AuthorizationPolicy:
		c.authorizationPolicy(spec)
	case *security.RequestAuthentication:
		c.requestAuthentication(spec)
	case *telemetry.Telemetry:
		c.telemetry(spec)
	case nil:
		c.errorf("spec", "missing spec")
	default:
		c.errorf("spec", "%s has an unexpected spec type %T", r.Kind, spec)
	}
	if info, ok := config.LookupKind(r.Kind); ok && r.Spec != nil {
		if got, want := r.Spec.ProtoReflect().Descriptor().FullName(), info.New().ProtoReflect().Descriptor().FullName(); got != want {
			c.errorf("spec", "kind %s needs a %s spec, got %s", r.Kind, want, got)
		}
	} else if !ok {
		c.errorf("kind", "%s", fmt.Sprintf("unknown kind %q", r.Kind))
	}
	if is, ok := NotEnforced(r); ok {
		c.res.NotEnforced = append(c.res.NotEnforced, is)
	}
	return c.res
}

// Resources validates each resource and merges the results.
func Resources(rs []*config.Resource) Result {
	var out Result
	for _, r := range rs {
		out.Merge(Resource(r))
	}
	return out
}
