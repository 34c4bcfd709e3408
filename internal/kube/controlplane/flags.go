package controlplane

import (
	"context"
	"flag"

	"github.com/trellis-mesh/trellis/internal/trellisd"
)

// Flags are trellisd's Kubernetes flags, as the installed Deployment
// passes them. cmd/trellisd registers them and calls Setup before
// trellisd.Run:
//
//	kf := controlplane.RegisterFlags(fs)
//	fs.Parse(os.Args[1:])
//	if _, err := kf.Setup(ctx, &o); err != nil { ... }
type Flags struct {
	Kube           bool
	Kubeconfig     string
	Context        string
	Namespace      string
	MeshConfig     string
	InjectConfig   string
	WebhookCertDir string
	WebhookAddress string
	ClusterID      string
	LogLevel       string
}

// RegisterFlags adds the flags to fs.
func RegisterFlags(fs *flag.FlagSet) *Flags {
	f := &Flags{}
	fs.BoolVar(&f.Kube, "kube", false, "read config and services from Kubernetes (Istio CRDs, Services, EndpointSlices, Pods) and serve the webhooks")
	fs.StringVar(&f.Kubeconfig, "kubeconfig", "", "kubeconfig file; empty means $KUBECONFIG, ~/.kube/config, then in-cluster")
	fs.StringVar(&f.Context, "context", "", "kubeconfig context")
	fs.StringVar(&f.Namespace, "namespace", "trellis-system", "control plane namespace (remote-cluster Secrets and the webhook certificate live here)")
	fs.StringVar(&f.MeshConfig, "mesh-config", "", "mesh config file (the trellis ConfigMap's mesh key); empty keeps the flags' values")
	fs.StringVar(&f.InjectConfig, "inject-config", "", "sidecar injection config file (the trellis-sidecar-injector ConfigMap's config key)")
	fs.StringVar(&f.WebhookCertDir, "webhook-cert-dir", "", "directory with ca.crt, tls.crt, tls.key for the webhooks; empty disables the webhook server")
	fs.StringVar(&f.WebhookAddress, "webhook-address", ":15017", "address of the injection and validation webhooks (HTTPS)")
	fs.StringVar(&f.ClusterID, "cluster-id", "Kubernetes", "this cluster's name on its endpoints")
	fs.StringVar(&f.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	return f
}

// Setup applies the mesh config file and, with --kube, wires the
// Kubernetes sources into o. Without --kube it only reads --mesh-config.
func (f *Flags) Setup(ctx context.Context, o *trellisd.Options) (*Wired, error) {
	if f.MeshConfig != "" {
		if _, err := ApplyMeshConfig(f.MeshConfig, o); err != nil {
			return nil, err
		}
	}
	if !f.Kube {
		return nil, nil
	}
	return Wire(ctx, Options{
		Kubeconfig: f.Kubeconfig, Context: f.Context, Namespace: f.Namespace,
		InjectConfig: f.InjectConfig, WebhookCertDir: f.WebhookCertDir, WebhookAddress: f.WebhookAddress,
		ClusterID: f.ClusterID,
	}, o)
}
