package install

import (
	"sort"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// crdKind describes one Istio custom resource kind.
type crdKind struct {
	Group      string
	Kind       string
	Plural     string
	ShortNames []string
	Versions   []string // served, in order; the last one is stored
	Columns    []apiextv1.CustomResourceColumnDefinition
}

var (
	networkingVersions = []string{"v1alpha3", "v1beta1", "v1"}
	securityVersions   = []string{"v1beta1", "v1"}
	age                = apiextv1.CustomResourceColumnDefinition{Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp"}
)

// crdKinds lists every Istio kind Trellis installs a CRD for. Istio's
// networking kinds serve v1alpha3, v1beta1 and v1 with the same schema;
// security kinds serve v1beta1 and v1.
var crdKinds = []crdKind{
	{Group: "networking.istio.io", Kind: "VirtualService", Plural: "virtualservices", ShortNames: []string{"vs"}, Versions: networkingVersions,
		Columns: []apiextv1.CustomResourceColumnDefinition{
			{Name: "Gateways", Type: "string", JSONPath: ".spec.gateways"},
			{Name: "Hosts", Type: "string", JSONPath: ".spec.hosts"}, age}},
	{Group: "networking.istio.io", Kind: "DestinationRule", Plural: "destinationrules", ShortNames: []string{"dr"}, Versions: networkingVersions,
		Columns: []apiextv1.CustomResourceColumnDefinition{{Name: "Host", Type: "string", JSONPath: ".spec.host"}, age}},
	{Group: "networking.istio.io", Kind: "Gateway", Plural: "gateways", ShortNames: []string{"gw"}, Versions: networkingVersions},
	{Group: "networking.istio.io", Kind: "ServiceEntry", Plural: "serviceentries", ShortNames: []string{"se"}, Versions: networkingVersions,
		Columns: []apiextv1.CustomResourceColumnDefinition{
			{Name: "Hosts", Type: "string", JSONPath: ".spec.hosts"},
			{Name: "Location", Type: "string", JSONPath: ".spec.location"},
			{Name: "Resolution", Type: "string", JSONPath: ".spec.resolution"}, age}},
	{Group: "networking.istio.io", Kind: "WorkloadEntry", Plural: "workloadentries", ShortNames: []string{"we"}, Versions: networkingVersions,
		Columns: []apiextv1.CustomResourceColumnDefinition{age, {Name: "Address", Type: "string", JSONPath: ".spec.address"}}},
	{Group: "networking.istio.io", Kind: "WorkloadGroup", Plural: "workloadgroups", ShortNames: []string{"wg"}, Versions: networkingVersions},
	{Group: "networking.istio.io", Kind: "Sidecar", Plural: "sidecars", Versions: networkingVersions},
	{Group: "networking.istio.io", Kind: "EnvoyFilter", Plural: "envoyfilters", Versions: []string{"v1alpha3"}},
	{Group: "security.istio.io", Kind: "PeerAuthentication", Plural: "peerauthentications", ShortNames: []string{"pa"}, Versions: securityVersions,
		Columns: []apiextv1.CustomResourceColumnDefinition{
			{Name: "Mode", Type: "string", JSONPath: ".spec.mtls.mode"}, age}},
	{Group: "security.istio.io", Kind: "AuthorizationPolicy", Plural: "authorizationpolicies", ShortNames: []string{"ap"}, Versions: securityVersions,
		Columns: []apiextv1.CustomResourceColumnDefinition{
			{Name: "Action", Type: "string", JSONPath: ".spec.action"}, age}},
	{Group: "security.istio.io", Kind: "RequestAuthentication", Plural: "requestauthentications", ShortNames: []string{"ra"}, Versions: securityVersions},
	{Group: "telemetry.istio.io", Kind: "Telemetry", Plural: "telemetries", ShortNames: []string{"telemetry"}, Versions: []string{"v1alpha1", "v1"}},
}

// categoryFor returns the kubectl categories of a group ("kubectl get
// istio-io" lists every Istio object).
func categoryFor(group string) []string {
	switch group {
	case "networking.istio.io":
		return []string{"istio-io", "networking-istio-io"}
	case "security.istio.io":
		return []string{"istio-io", "security-istio-io"}
	default:
		return []string{"istio-io", "telemetry-istio-io"}
	}
}

// CRDs returns the CustomResourceDefinitions for every Istio kind, sorted
// by name. Specs are stored as written (x-kubernetes-preserve-unknown-
// fields): the validating webhook checks them with the same field-path
// errors as local mode.
func CRDs() []*apiextv1.CustomResourceDefinition {
	out := make([]*apiextv1.CustomResourceDefinition, 0, len(crdKinds))
	for _, k := range crdKinds {
		out = append(out, crdFor(k))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func crdFor(k crdKind) *apiextv1.CustomResourceDefinition {
	yes := true
	schema := &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{
		Type: "object",
		Properties: map[string]apiextv1.JSONSchemaProps{
			"spec":   {Type: "object", XPreserveUnknownFields: &yes, Description: k.Kind + " spec; validated by the trellisd webhook."},
			"status": {Type: "object", XPreserveUnknownFields: &yes},
		},
	}}
	crd := &apiextv1.CustomResourceDefinition{
		TypeMeta: metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   k.Plural + "." + k.Group,
			Labels: map[string]string{"app": "istio-pilot", "chart": "istio"},
		},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: k.Group,
			Names: apiextv1.CustomResourceDefinitionNames{
				Kind:       k.Kind,
				ListKind:   k.Kind + "List",
				Plural:     k.Plural,
				Singular:   lower(k.Kind),
				ShortNames: k.ShortNames,
				Categories: categoryFor(k.Group),
			},
			Scope: apiextv1.NamespaceScoped,
		},
	}
	for i, v := range k.Versions {
		crd.Spec.Versions = append(crd.Spec.Versions, apiextv1.CustomResourceDefinitionVersion{
			Name:                     v,
			Served:                   true,
			Storage:                  i == len(k.Versions)-1,
			Schema:                   schema,
			Subresources:             &apiextv1.CustomResourceSubresources{Status: &apiextv1.CustomResourceSubresourceStatus{}},
			AdditionalPrinterColumns: k.Columns,
		})
	}
	return crd
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
