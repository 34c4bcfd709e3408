// Package credential keeps the TLS Secrets that gateways name in
// tls.credentialName, for the gateway TLS work: an informer on Secrets
// converts each one at the edge into its PEM material (or drops it when it
// holds none), so only certificate Secrets stay in memory. Translation reads
// them as translate.Input.Credentials, keyed "namespace/name".
package credential
