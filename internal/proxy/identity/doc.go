// Package identity is the proxy's certificate client, what pilot-agent is
// for Envoy: it generates the workload's private key in the proxy (the key
// never leaves it), asks trellisd's CA (Istio's
// IstioCertificateService/CreateCertificate over TLS, port 15012) to sign
// a CSR for the workload's SPIFFE identity
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>, and hands
// the result to the proxy's secret store as the SDS secrets Istio's TLS
// contexts name: `default` (certificate chain and key) and `ROOTCA` (the
// trust bundle). It renews at about half of the certificate's remaining
// life and, while the CA cannot be reached, keeps the current certificate
// and retries with back-off.
//
// Where it sits: proxy.Serve starts an Agent beside the xDS client when
// a CA address is configured (CA_ADDR); listeners (tlsterm) and clusters
// read the secrets from the store at handshake time, so a renewal takes
// effect on the next connection without a config push. The contract with
// the CA is docs/security.md.
package identity
