package ca

import "net/url"

// DefaultTrustDomain is Istio's default MeshConfig trustDomain.
const DefaultTrustDomain = "cluster.local"

// Identity is a workload's SPIFFE identity: trust domain, namespace and
// service account.
type Identity struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// String renders the SPIFFE ID: spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
func (id Identity) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL is the SPIFFE ID as the URI SAN of a certificate.
func (id Identity) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}
