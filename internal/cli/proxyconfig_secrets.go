package cli

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"strconv"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// runSecrets is `proxy-config secret`: the SDS secrets with their
// certificates' validity.
func runSecrets(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	d, err := t.dump()
	if err != nil {
		return err
	}
	var list []*tlsv3.Secret
	for _, ds := range d.secrets {
		var s tlsv3.Secret
		if err := ds.GetSecret().UnmarshalTo(&s); err != nil {
			return fmt.Errorf("secret %q: %w", ds.GetName(), err)
		}
		list = append(list, &s)
	}
	if f.output != "short" {
		return printProtos(w, f.output, list)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "RESOURCE NAME\tTYPE\tSTATUS\tVALID CERT\tSERIAL NUMBER\tNOT AFTER\tNOT BEFORE")
	for _, s := range list {
		typ, pemData := "Cert Chain", []byte(s.GetTlsCertificate().GetCertificateChain().GetInlineString())
		if s.GetTlsCertificate() == nil {
			typ, pemData = "CA", []byte(s.GetValidationContext().GetTrustedCa().GetInlineString())
		}
		if len(pemData) == 0 {
			pemData = s.GetTlsCertificate().GetCertificateChain().GetInlineBytes()
		}
		valid, serial, notAfter, notBefore := "false", "", "", ""
		if block, _ := pem.Decode(pemData); block != nil {
			if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
				valid = strconv.FormatBool(time.Now().Before(cert.NotAfter) && time.Now().After(cert.NotBefore))
				serial = cert.SerialNumber.Text(16)
				notAfter = cert.NotAfter.UTC().Format(time.RFC3339)
				notBefore = cert.NotBefore.UTC().Format(time.RFC3339)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\tACTIVE\t%s\t%s\t%s\t%s\n", s.GetName(), typ, valid, serial, notAfter, notBefore)
	}
	return tw.Flush()
}
