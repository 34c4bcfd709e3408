package controlplane

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/trellis-mesh/trellis/internal/ca"
	"github.com/trellis-mesh/trellis/internal/config"
	configkube "github.com/trellis-mesh/trellis/internal/config/kube"
	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/kube"
	"github.com/trellis-mesh/trellis/internal/kube/credential"
	registrykube "github.com/trellis-mesh/trellis/internal/registry/kube"
	"github.com/trellis-mesh/trellis/internal/trellisd"
	"github.com/trellis-mesh/trellis/internal/webhook"
)

// Options are trellisd's Kubernetes settings. The installed Deployment
// runs `trellisd --kube --namespace=trellis-system
// --inject-config=/etc/trellis/inject/config
// --webhook-cert-dir=/etc/trellis/webhook`.
type Options struct {
	// Clients, when set, is used as is; otherwise Kubeconfig/Context are
	// loaded (empty: $KUBECONFIG, ~/.kube/config, then in-cluster).
	Clients    *kube.Clients
	Kubeconfig string
	Context    string
	// Namespace is the control plane's namespace; empty means
	// "trellis-system".
	Namespace string
	// InjectConfig is the injection config file (--inject-config); empty
	// means inject.DefaultConfig().
	InjectConfig string
	// WebhookCertDir holds ca.crt, tls.crt, tls.key (--webhook-cert-dir);
	// empty disables the webhook server.
	WebhookCertDir string
	// WebhookAddress is where the webhooks are served; empty means ":15017".
	WebhookAddress string
	// DomainSuffix and ClusterID are passed to the registry.
	DomainSuffix string
	ClusterID    string
	// Log receives warnings (invalid objects, webhook refusals); nil means
	// the default slog logger.
	Log *slog.Logger
}

// Wired is what Wire started.
type Wired struct {
	Clients  *kube.Clients
	Registry *registrykube.Registry
	// Remote holds the clusters joined by Secrets labelled
	// istio/multiCluster=true in the control plane's namespace.
	Remote      *registrykube.Clusters
	Config      *configkube.Source
	Credentials *credential.Watcher
	// WebhookAddr is the bound webhook address, or nil when disabled.
	WebhookAddr net.Addr
}

// Wire starts the Kubernetes sources (waiting for their first sync, so
// trellisd's first push already holds the whole cluster), adds them to o
// (Store, Registries) and starts the webhook server. Everything runs until
// ctx ends.
func Wire(ctx context.Context, ko Options, o *trellisd.Options) (*Wired, error) {
	if ko.Namespace == "" {
		ko.Namespace = "trellis-system"
	}
	if ko.WebhookAddress == "" {
		ko.WebhookAddress = fmt.Sprintf(":%d", webhook.DefaultPort)
	}
	if ko.Log == nil {
		ko.Log = slog.Default()
	}
	c := ko.Clients
	if c == nil {
		var err error
		if c, err = kube.Connect(ko.Kubeconfig, ko.Context); err != nil {
			return nil, err
		}
	}
	w := &Wired{Clients: c}
	if o.DomainSuffix != "" && ko.DomainSuffix == "" {
		ko.DomainSuffix = o.DomainSuffix
	}
	w.Registry = registrykube.New(c.Kube, registrykube.Options{DomainSuffix: ko.DomainSuffix, ClusterID: ko.ClusterID, SystemNamespace: ko.Namespace})
	if err := w.Registry.Start(ctx); err != nil {
		return nil, fmt.Errorf("kubernetes registry: %w", err)
	}
	if o.Store == nil {
		o.Store = config.NewStore()
	}
	w.Config = configkube.New(c.Dynamic, c.Discovery, o.Store, configkube.Options{Events: c.Kube, Log: ko.Log})
	if err := w.Config.Start(ctx); err != nil {
		return nil, fmt.Errorf("kubernetes config: %w", err)
	}
	w.Credentials = credential.New(c.Kube, "")
	if err := w.Credentials.Start(ctx); err != nil {
		return nil, fmt.Errorf("gateway credentials: %w", err)
	}
	w.Remote = registrykube.NewClusters(c.Kube, ko.Namespace, registrykube.Options{DomainSuffix: ko.DomainSuffix, SystemNamespace: ko.Namespace})
	var webhookCA atomic.Pointer[[]byte] // set once the webhook certificate is known
	w.Remote.OnJoin = func(ctx context.Context, name string, client kubernetes.Interface) {
		for ctx.Err() == nil {
			if ca := webhookCA.Load(); ca != nil {
				if err := trustRemoteWebhook(ctx, client, *ca); err != nil {
					ko.Log.Warn("could not update the remote cluster's injection webhook", "cluster", name, "err", err)
				}
				return
			}
			if ko.WebhookCertDir == "" {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	if err := w.Remote.Start(ctx); err != nil {
		return nil, fmt.Errorf("remote clusters: %w", err)
	}
	o.Registries = append(o.Registries, w.Registry, w.Remote)
	// The CA, as istiod's: the root in the istio-ca-secret Secret (or a
	// plugged-in cacerts Secret), callers authenticated by TokenReview
	// in the cluster they name.
	o.SystemNamespace = ko.Namespace
	if o.CAStore == nil {
		o.CAStore = ca.Secret{Client: c.Kube, Namespace: ko.Namespace, Name: ca.SelfSignedSecret}
	}
	if o.CAPlugged == nil {
		dir := o.CACertsDir
		if dir == "" {
			dir = trellisd.DefaultCACertsDir
		}
		// A mounted cacerts volume wins; otherwise read the Secret itself.
		if _, err := os.Stat(filepath.Join(dir, ca.CAKeyFile)); err != nil {
			o.CAPlugged = ca.Secret{Client: c.Kube, Namespace: ko.Namespace, Name: ca.PluggedSecret}
		}
	}
	if o.CAAuth == nil {
		// A proxy's token is reviewed by its own cluster's API server:
		// this one's, or a remote cluster's through its remote secret.
		o.CAAuth = ca.ClusterTokenReview{LocalCluster: ko.ClusterID, Local: c.Kube, Remote: w.Remote.Client}
	}
	o.RootPublishers = append(o.RootPublishers, func(ctx context.Context, roots []byte) error {
		return ca.PublishRoots(ctx, c.Kube, roots, func(format string, args ...any) { ko.Log.Warn(fmt.Sprintf(format, args...)) })
	})
	if o.Credentials == nil {
		o.Credentials = w.Credentials
	}

	if ko.WebhookCertDir == "" {
		return w, nil
	}
	certs, err := webhook.LoadCerts(ko.WebhookCertDir)
	if err != nil {
		// Installed with `trellis manifest generate | kubectl apply -f -`:
		// no certificate Secret yet. Make it, as `trellis install` would.
		ko.Log.Info("webhook certificates not mounted; using the Secret through the API", "err", err)
		if certs, err = secretCerts(ctx, c, ko.Namespace); err != nil {
			return nil, err
		}
	}
	if err := trustWebhooks(ctx, c, certs.CA); err != nil {
		ko.Log.Warn("could not update the webhook configurations", "err", err)
	}
	webhookCA.Store(&certs.CA)
	tlsCfg, err := certs.TLSConfig()
	if err != nil {
		return nil, err
	}
	cfg := inject.DefaultConfig()
	if ko.InjectConfig != "" {
		if cfg, err = inject.LoadConfig(ko.InjectConfig); err != nil {
			return nil, err
		}
	}
	inj := webhook.NewInjector(cfg)
	inj.NamespaceLabels = w.Registry.NamespaceLabels
	inj.ClusterNamespaceLabels = w.Remote.NamespaceLabels
	inj.ServerVersion = c.Kube.Discovery()
	l, err := net.Listen("tcp", ko.WebhookAddress)
	if err != nil {
		return nil, fmt.Errorf("webhook address: %w", err)
	}
	w.WebhookAddr = l.Addr()
	srv := &webhook.Server{Inject: inj, Validate: true, Log: ko.Log}
	go func() {
		if err := srv.Serve(ctx, l, tlsCfg); err != nil {
			log.Printf("trellisd: webhook server stopped: %v", err)
		}
	}()
	return w, nil
}
