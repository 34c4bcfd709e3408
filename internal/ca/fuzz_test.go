package ca

import "testing"

// FuzzCSR: whatever a caller sends as its CSR, parsing and the SAN check
// return an error or a verdict, never a panic, and never accept a CSR that
// does not name exactly the caller.
func FuzzCSR(f *testing.F) {
	good, _ := csrFor(f, "spiffe://cluster.local/ns/shop/sa/front")
	f.Add(good)
	f.Add("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")
	f.Add("")
	id := Identity{TrustDomain: "cluster.local", Namespace: "shop", ServiceAccount: "front"}
	f.Fuzz(func(t *testing.T, p string) {
		csr, err := parseCSR(p)
		if err != nil {
			return
		}
		if checkSANs(csr, id) == nil && (len(csr.URIs) != 1 || csr.URIs[0].String() != id.String()) {
			t.Errorf("accepted a CSR for %v", csr.URIs)
		}
	})
}

func FuzzCredentials(f *testing.F) {
	f.Add("# c\n" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef shop front\n")
	f.Add("x y")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseCredentials([]byte(s))
		if err != nil {
			return
		}
		for h, c := range m {
			if len(h) != 64 || c.Namespace == "" || c.ServiceAccount == "" {
				t.Errorf("accepted %q -> %+v", h, c)
			}
		}
	})
}
