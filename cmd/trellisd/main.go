// Command trellisd is the Trellis control plane: it watches Istio config
// and the service registry and serves them to proxies over xDS.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/trellis-mesh/trellis/internal/kube/controlplane"
	"github.com/trellis-mesh/trellis/internal/trellisd"
)

func main() {
	var o trellisd.Options
	fs := flag.NewFlagSet("trellisd", flag.ExitOnError)
	fs.StringVar(&o.ConfigDir, "config-dir", "", "directory of Istio YAML to serve; watched for changes")
	fs.StringVar(&o.XDSAddress, "xds-address", ":15010", "address of the plaintext ADS (xDS) gRPC server")
	fs.StringVar(&o.DebugAddress, "debug-address", ":8080", `address of /debug/syncz, /debug/configz, /debug/registryz; "" disables`)
	fs.StringVar(&o.MetricsAddress, "metrics-address", ":15014", `address of Prometheus /metrics; "" disables`)
	fs.StringVar(&o.DomainSuffix, "domain-suffix", "cluster.local", "cluster domain of service hostnames")
	fs.StringVar(&o.OutboundTrafficPolicy, "outbound-traffic-policy", "ALLOW_ANY", "ALLOW_ANY or REGISTRY_ONLY: where sidecars send traffic to unknown hosts")
	fs.StringVar(&o.AccessLogFile, "access-log-file", "", `proxies write access logs here ("/dev/stdout"); empty disables`)
	fs.StringVar(&o.AccessLogEncoding, "access-log-encoding", "TEXT", "TEXT or JSON")
	fs.DurationVar(&o.Debounce, "debounce", 0, "quiet period after a change before pushing (default 100ms)")
	fs.DurationVar(&o.DebounceMax, "debounce-max", 0, "longest a push waits under a steady stream of changes (default 1s)")
	fs.StringVar(&o.TrustDomain, "trust-domain", "cluster.local", "SPIFFE trust domain of workload identities (MeshConfig trustDomain overrides it)")
	fs.StringVar(&o.CAAddress, "ca-address", ":15012", `address of Istio's certificate API (IstioCertificateService, TLS); "" disables the CA`)
	fs.StringVar(&o.CADir, "ca-dir", "", "directory persisting the self-signed root (ca-cert.pem, ca-key.pem); default <user config dir>/trellis/ca; unused with --kube (Secret istio-ca-secret)")
	fs.StringVar(&o.CACertsDir, "cacerts-dir", trellisd.DefaultCACertsDir, "Istio's plugged-in CA (ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem), used when it holds ca-key.pem")
	fs.StringVar(&o.WorkloadCredentials, "workload-credentials", "", "local mode: file of per-workload credential hashes (written by trellis local up)")
	fs.StringVar(&o.CARootFile, "ca-root-file", "", "write the trust bundle (PEM) to this file at start")
	fs.DurationVar(&o.WorkloadCertTTL, "workload-cert-ttl", 24*time.Hour, "lifetime of a workload certificate whose request names none")
	fs.DurationVar(&o.MaxWorkloadCertTTL, "max-workload-cert-ttl", 24*time.Hour, "longest lifetime a workload certificate request may get")
	kf := controlplane.RegisterFlags(fs)
	fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "trellisd: unexpected arguments %q\n", fs.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := kf.Setup(ctx, &o); err != nil {
		fmt.Fprintf(os.Stderr, "trellisd: %v\n", err)
		os.Exit(1)
	}
	if err := trellisd.Run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "trellisd: %v\n", err)
		os.Exit(1)
	}
}
