// Package ca is trellisd's certificate authority and Istio's certificate
// signing API. Workloads get SPIFFE identities
// (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>); their
// proxies generate a key, send a CSR to
// istio.v1.auth.IstioCertificateService/CreateCertificate over TLS (port
// 15012), and get back a leaf certificate for exactly their own identity,
// the chain to the root, and the trust bundle.
//
// Flow: Store (a directory in local mode, the istio-ca-secret Secret in
// Kubernetes; or Istio's plugged-in cacerts) -> Load -> Authority (signs
// leaves and trellisd's serving certificate) -> Server (authenticates the
// caller with an Authenticator: TokenReview in Kubernetes, the per-workload
// credentials `trellis local up` issues in local mode; checks the CSR names
// the caller; signs) -> gRPC.
//
// The wire contract for proxies is in docs/security.md.
package ca
