package ca

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Istio's Secret names: the self-signed CA trellisd creates, and the
// plugged-in CA an operator provides. Both live in the control plane's
// namespace.
const (
	SelfSignedSecret = "istio-ca-secret"
	PluggedSecret    = "cacerts"
)

// ErrExist is returned by Store.Create when the material already exists
// (another trellisd made it first).
var ErrExist = errors.New("ca material already exists")

// Store holds CA key material under Istio's key names.
type Store interface {
	// Load returns the stored keys, or nil and no error when there are none.
	Load(ctx context.Context) (map[string][]byte, error)
	// Create stores keys that must not exist yet; ErrExist when they do.
	Create(ctx context.Context, keys map[string][]byte) error
	// String names the store in errors and logs.
	String() string
}

// Dir is a Store in a directory: one file per key (ca-cert.pem, ...). The
// directory and the key file are private to trellisd's user.
type Dir string

func (d Dir) String() string { return "directory " + string(d) }

// Load reads the Istio key files present in the directory; none means no
// material.
func (d Dir) Load(context.Context) (map[string][]byte, error) {
	m := map[string][]byte{}
	for _, k := range []string{CACertFile, CAKeyFile, CertChainFile, RootCertFile} {
		b, err := os.ReadFile(filepath.Join(string(d), k))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		m[k] = b
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// Create writes the key files into a temporary directory and renames it
// into place, so the CA appears whole or not at all and a second trellisd
// racing on the same directory gets ErrExist.
func (d Dir) Create(_ context.Context, keys map[string][]byte) error {
	parent := filepath.Dir(string(d))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".ca-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for k, v := range keys {
		mode := os.FileMode(0o644)
		if k == CAKeyFile {
			mode = 0o600
		}
		if err := os.WriteFile(filepath.Join(tmp, k), v, mode); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	err = os.Rename(tmp, string(d))
	if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
		return ErrExist
	}
	return err
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Secret is a Store in a Kubernetes Secret's data.
type Secret struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
}

func (s Secret) String() string { return "Secret " + s.Namespace + "/" + s.Name }

// Load reads the Secret's data; a missing Secret means no material.
func (s Secret) Load(ctx context.Context) (map[string][]byte, error) {
	sec, err := s.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", s, err)
	}
	return sec.Data, nil
}

// Create makes the Secret; ErrExist when it is already there.
func (s Secret) Create(ctx context.Context, keys map[string][]byte) error {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "trellisd"}},
		Type:       "istio.io/ca-root",
		Data:       keys,
	}
	_, err := s.Client.CoreV1().Secrets(s.Namespace).Create(ctx, sec, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return ErrExist
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", s, err)
	}
	return nil
}

// Load returns the CA to serve. A plugged-in CA (Istio's cacerts; plugged
// may be nil) wins when it holds ca-key.pem. Otherwise the self-signed root
// in self is used, created on first start for trustDomain and persisted
// (if another trellisd creates it first, that one is used).
func Load(ctx context.Context, plugged, self Store, trustDomain string, now time.Time) (*Authority, error) {
	if plugged != nil {
		m, err := plugged.Load(ctx)
		if err != nil {
			return nil, fmt.Errorf("plugged-in CA (%s): %w", plugged, err)
		}
		if len(m[CAKeyFile]) > 0 {
			a, err := Plugged(m)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", plugged, err)
			}
			return a, nil
		}
	}
	m, err := self.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("self-signed CA (%s): %w", self, err)
	}
	if m == nil {
		keys, err := NewSelfSigned(trustDomain, now)
		if err != nil {
			return nil, err
		}
		switch err := self.Create(ctx, keys); {
		case errors.Is(err, ErrExist):
			if m, err = self.Load(ctx); err != nil {
				return nil, fmt.Errorf("self-signed CA (%s): %w", self, err)
			}
			if m == nil {
				return nil, fmt.Errorf("self-signed CA: %s exists but holds no %s; remove it or choose another place", self, CACertFile)
			}
		case err != nil:
			return nil, fmt.Errorf("persist the self-signed CA in %s: %w", self, err)
		default:
			m = keys
		}
	}
	a, err := SelfSigned(m)
	if err != nil {
		return nil, fmt.Errorf("self-signed CA (%s): %w", self, err)
	}
	return a, nil
}
