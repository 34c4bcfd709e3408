package ca

import (
	"fmt"
	"net/url"
	"strings"
)

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

// ParseIdentity parses spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
func ParseIdentity(s string) (Identity, error) {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "spiffe" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return Identity{}, fmt.Errorf("%q is not a SPIFFE ID; want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", s)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" || parts[1] == "" || parts[3] == "" {
		return Identity{}, fmt.Errorf("%q is not a workload identity; want spiffe://%s/ns/<namespace>/sa/<service-account>", s, u.Host)
	}
	return Identity{TrustDomain: u.Host, Namespace: parts[1], ServiceAccount: parts[3]}, nil
}
