package kube

import (
	"fmt"
	"sync"

	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// Clients bundles the clients Trellis uses against one cluster. All fields
// are safe for concurrent use.
type Clients struct {
	Config    *rest.Config
	Kube      kubernetes.Interface
	Dynamic   dynamic.Interface
	Ext       apiextclient.Interface
	Discovery discovery.DiscoveryInterface

	mapperOnce sync.Once
	mapper     *restmapper.DeferredDiscoveryRESTMapper
}

// LoadConfig resolves a rest.Config the way kubectl does: the kubeconfig
// path when given (else $KUBECONFIG, else ~/.kube/config), then the
// in-cluster service account. context selects a kubeconfig context; empty
// means the current one.
func LoadConfig(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: context}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w (pass --kubeconfig or set KUBECONFIG)", err)
	}
	return cfg, nil
}

// NewClients builds every client from one rest.Config. QPS and Burst are
// raised from client-go's defaults (5/10), which throttle installs and
// informer resyncs against a busy API server.
func NewClients(cfg *rest.Config) (*Clients, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS = 100
	}
	if cfg.Burst == 0 {
		cfg.Burst = 200
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "trellis"
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client: %w", err)
	}
	ec, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("apiextensions client: %w", err)
	}
	return &Clients{Config: cfg, Kube: kc, Dynamic: dc, Ext: ec, Discovery: kc.Discovery()}, nil
}

// Connect is LoadConfig followed by NewClients.
func Connect(kubeconfig, context string) (*Clients, error) {
	cfg, err := LoadConfig(kubeconfig, context)
	if err != nil {
		return nil, err
	}
	return NewClients(cfg)
}

// Mapper returns a REST mapper backed by discovery, for turning a
// group/version/kind (from YAML) into a resource. It caches discovery;
// call Reset on it after installing CRDs.
func (c *Clients) Mapper() *restmapper.DeferredDiscoveryRESTMapper {
	c.mapperOnce.Do(func() {
		c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Discovery))
	})
	return c.mapper
}
