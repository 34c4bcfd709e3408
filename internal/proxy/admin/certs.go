package admin

import (
	"crypto/x509"
	"net/http"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// CertChain is one certificate secret the proxy holds: its SDS name and
// its chain, leaf first.
type CertChain struct {
	Secret string
	Chain  []*x509.Certificate
}

// handleCerts renders /certs as Envoy's admin.v3.Certificates: one entry
// per certificate secret (the workload's `default`, gateway credentials),
// its chain with serial, SANs and validity. Path is "sds:NAME", the secret
// the chain came from.
func (s *Server) handleCerts(w http.ResponseWriter, r *http.Request) {
	out := &adminv3.Certificates{}
	if s.opts.Certificates != nil {
		now := time.Now()
		for _, cc := range s.opts.Certificates() {
			c := &adminv3.Certificate{}
			for _, x := range cc.Chain {
				c.CertChain = append(c.CertChain, certDetails("sds:"+cc.Secret, x, now))
			}
			out.Certificates = append(out.Certificates, c)
		}
	}
	writeProtoJSON(w, out)
}

func certDetails(path string, x *x509.Certificate, now time.Time) *adminv3.CertificateDetails {
	d := &adminv3.CertificateDetails{
		Path:           path,
		SerialNumber:   x.SerialNumber.Text(16),
		ValidFrom:      timestamppb.New(x.NotBefore),
		ExpirationTime: timestamppb.New(x.NotAfter),
	}
	if left := x.NotAfter.Sub(now); left > 0 {
		d.DaysUntilExpiration = uint64(left / (24 * time.Hour))
	}
	for _, u := range x.URIs {
		d.SubjectAltNames = append(d.SubjectAltNames, &adminv3.SubjectAlternateName{Name: &adminv3.SubjectAlternateName_Uri{Uri: u.String()}})
	}
	for _, n := range x.DNSNames {
		d.SubjectAltNames = append(d.SubjectAltNames, &adminv3.SubjectAlternateName{Name: &adminv3.SubjectAlternateName_Dns{Dns: n}})
	}
	for _, ip := range x.IPAddresses {
		d.SubjectAltNames = append(d.SubjectAltNames, &adminv3.SubjectAlternateName{Name: &adminv3.SubjectAlternateName_IpAddress{IpAddress: ip.String()}})
	}
	return d
}
