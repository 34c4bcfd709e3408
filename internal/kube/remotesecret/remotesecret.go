package remotesecret

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube"
)

// Istio's names and labels for a remote secret.
const (
	// LabelMultiCluster marks the Secret for the reading trellisd.
	LabelMultiCluster = "istio/multiCluster"
	// AnnotationCluster names the cluster the Secret joins.
	AnnotationCluster = "networking.istio.io/cluster"
	// NamePrefix precedes the cluster name in the Secret's name.
	NamePrefix = "istio-remote-secret-"
)

// Options say which cluster the Secret joins and how to reach it.
type Options struct {
	// Name is the cluster's name in the mesh (its
	// values.global.multiCluster.clusterName); required.
	Name string
	// Namespace is the system namespace, in the read cluster (where the
	// reader service account lives) and in the reading one (where the
	// Secret goes). Empty means "trellis-system".
	Namespace string
	// Server is the API server address the reading trellisd dials; empty
	// means the one the clients connect to.
	Server string
	// TokenWait is how long to wait for Kubernetes' token controller to
	// fill the service account token Secret before asking the TokenRequest
	// API instead; zero means 10s.
	TokenWait time.Duration
	// TokenTTL is the lifetime asked of the TokenRequest API when it is
	// used; zero means one year (the API server may shorten it).
	TokenTTL time.Duration
	// Warn receives notes (the token came from TokenRequest and expires);
	// nil drops them.
	Warn func(string)
}

// TokenSecretName is the service account token Secret Create makes.
func TokenSecretName() string { return install.ReaderServiceAccount + "-istio-remote-secret-token" }

// Create makes sure the reader service account and its RBAC exist in the
// cluster c talks to, gets a token for it, and returns the remote Secret
// for that cluster (not applied anywhere).
func Create(ctx context.Context, c *kube.Clients, o Options) (*corev1.Secret, error) {
	if o.Name == "" {
		return nil, errors.New("--name: required: the cluster's name in the mesh (values.global.multiCluster.clusterName of its install)")
	}
	if errs := validName(o.Name); errs != "" {
		return nil, fmt.Errorf("--name %q: %s", o.Name, errs)
	}
	if o.Namespace == "" {
		o.Namespace = "trellis-system"
	}
	if o.TokenWait == 0 {
		o.TokenWait = 10 * time.Second
	}
	if o.TokenTTL == 0 {
		o.TokenTTL = 365 * 24 * time.Hour
	}
	if o.Warn == nil {
		o.Warn = func(string) {}
	}
	if err := ensureReader(ctx, c, o.Namespace); err != nil {
		return nil, err
	}
	token, ca, err := readerToken(ctx, c, o)
	if err != nil {
		return nil, err
	}
	kc, err := kubeconfig(c, o, token, ca)
	if err != nil {
		return nil, err
	}
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        NamePrefix + o.Name,
			Namespace:   o.Namespace,
			Labels:      map[string]string{LabelMultiCluster: "true"},
			Annotations: map[string]string{AnnotationCluster: o.Name},
		},
		StringData: map[string]string{o.Name: string(kc)},
	}, nil
}

func validName(s string) string {
	if len(s) > 63 {
		return "at most 63 characters"
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' && i > 0 && i < len(s)-1) {
			return "want lower-case letters, digits and '-' (it names a Secret and a Secret key)"
		}
	}
	return ""
}

// ensureReader creates what install.ReaderRBAC lists where it is missing
// (a remote-profile install already has it).
func ensureReader(ctx context.Context, c *kube.Clients, ns string) error {
	if _, err := c.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		return fmt.Errorf("namespace %s: %w (install Trellis in this cluster first, e.g. trellis install --set profile=remote)", ns, err)
	}
	for _, o := range install.ReaderRBAC(ns) {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{Object: m}
		gvk := u.GroupVersionKind()
		mapping, err := c.Mapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", gvk.Kind, err)
		}
		ri := c.Dynamic.Resource(mapping.Resource)
		if u.GetNamespace() != "" {
			_, err = ri.Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{})
		} else {
			_, err = ri.Create(ctx, u, metav1.CreateOptions{})
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create %s %s: %w", gvk.Kind, u.GetName(), err)
		}
		if err != nil && gvk.Kind == "ClusterRole" {
			// Made by an older trellis: bring its rules up to date (the
			// primary's CA needs tokenreviews).
			got, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("read ClusterRole %s: %w", u.GetName(), err)
			}
			if !equality.Semantic.DeepEqual(got.Object["rules"], u.Object["rules"]) {
				got.Object["rules"] = u.Object["rules"]
				if _, err := ri.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
					return fmt.Errorf("update ClusterRole %s: %w", u.GetName(), err)
				}
			}
		}
	}
	return nil
}

// readerToken returns a token for the reader service account: the one
// Kubernetes' token controller puts into a service-account-token Secret
// (what istioctl uses), or, when no controller fills it within TokenWait,
// one from the TokenRequest API.
func readerToken(ctx context.Context, c *kube.Clients, o Options) (token string, ca []byte, err error) {
	secrets := c.Kube.CoreV1().Secrets(o.Namespace)
	want := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: TokenSecretName(), Namespace: o.Namespace,
			Annotations: map[string]string{corev1.ServiceAccountNameKey: install.ReaderServiceAccount}},
		Type: corev1.SecretTypeServiceAccountToken,
	}
	if _, err := secrets.Create(ctx, want, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", nil, fmt.Errorf("create token Secret %s/%s: %w", o.Namespace, want.Name, err)
	}
	deadline := time.Now().Add(o.TokenWait)
	for {
		s, err := secrets.Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			return "", nil, fmt.Errorf("token Secret %s/%s: %w", o.Namespace, want.Name, err)
		}
		if t := s.Data[corev1.ServiceAccountTokenKey]; len(t) > 0 {
			return string(t), s.Data[corev1.ServiceAccountRootCAKey], nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	secs := int64(o.TokenTTL / time.Second)
	tr, err := c.Kube.CoreV1().ServiceAccounts(o.Namespace).CreateToken(ctx, install.ReaderServiceAccount,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return "", nil, fmt.Errorf("no token controller filled Secret %s/%s within %s, and TokenRequest failed: %w", o.Namespace, want.Name, o.TokenWait, err)
	}
	o.Warn(fmt.Sprintf("no token controller filled Secret %s/%s within %s; using a TokenRequest token that expires at %s (run create-remote-secret again before then)",
		o.Namespace, want.Name, o.TokenWait, tr.Status.ExpirationTimestamp.UTC().Format(time.RFC3339)))
	return tr.Status.Token, nil, nil
}

// kubeconfig is Istio's remote-secret kubeconfig: cluster, context and
// user all named after the cluster.
func kubeconfig(c *kube.Clients, o Options, token string, tokenCA []byte) ([]byte, error) {
	server := o.Server
	if server == "" {
		server = c.Config.Host
	}
	cl := &clientcmdapi.Cluster{Server: server}
	switch {
	case len(c.Config.CAData) > 0:
		cl.CertificateAuthorityData = c.Config.CAData
	case c.Config.CAFile != "":
		b, err := os.ReadFile(c.Config.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig CA file: %w", err)
		}
		cl.CertificateAuthorityData = b
	case len(tokenCA) > 0:
		cl.CertificateAuthorityData = tokenCA
	}
	if c.Config.Insecure {
		// The kubeconfig used here does not verify the server; the remote
		// secret can do no better.
		cl.CertificateAuthorityData = nil
		cl.InsecureSkipTLSVerify = true
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[o.Name] = cl
	kc.AuthInfos[o.Name] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts[o.Name] = &clientcmdapi.Context{Cluster: o.Name, AuthInfo: o.Name}
	kc.CurrentContext = o.Name
	return clientcmd.Write(*kc)
}
