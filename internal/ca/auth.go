package ca

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"google.golang.org/grpc/metadata"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Audience is the token audience Istio's CA requires (the injector mounts
// a projected ServiceAccount token with it).
const Audience = "istio-ca"

// Caller is an authenticated workload: its namespace and service account.
type Caller struct {
	Namespace      string
	ServiceAccount string
}

// Authenticator maps a caller's bearer token to the workload it belongs
// to. An error means the token is not valid; its text is returned to the
// caller.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Caller, error)
}

// TokenReview authenticates Kubernetes ServiceAccount tokens with the API
// server's TokenReview, requiring the istio-ca audience.
type TokenReview struct {
	Client kubernetes.Interface
}

const saPrefix = "system:serviceaccount:"

// Authenticate asks the API server whether token is a valid token for the
// istio-ca audience and returns its ServiceAccount.
func (t TokenReview) Authenticate(ctx context.Context, token string) (Caller, error) {
	tr, err := t.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return Caller{}, fmt.Errorf("token review: %w", err)
	}
	if !tr.Status.Authenticated {
		msg := tr.Status.Error
		if msg == "" {
			msg = "not authenticated"
		}
		return Caller{}, fmt.Errorf("token rejected by the API server: %s", msg)
	}
	if !contains(tr.Status.Audiences, Audience) {
		return Caller{}, fmt.Errorf("token is not for audience %q (got %v)", Audience, tr.Status.Audiences)
	}
	ns, sa, ok := strings.Cut(strings.TrimPrefix(tr.Status.User.Username, saPrefix), ":")
	if !strings.HasPrefix(tr.Status.User.Username, saPrefix) || !ok || ns == "" || sa == "" {
		return Caller{}, fmt.Errorf("token belongs to %q, not a ServiceAccount", tr.Status.User.Username)
	}
	return Caller{Namespace: ns, ServiceAccount: sa}, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Credentials authenticates the per-workload tokens of local mode. The
// file holds one line per workload, "SHA256HEX NAMESPACE SERVICEACCOUNT":
// the hash of the workload's token, never the token. It is read at each
// request (a few lines, once per certificate), so `trellis local up`
// registers and removes workloads by rewriting it.
type Credentials struct {
	Path string
}

// Authenticate looks the token's hash up in the file.
func (c Credentials) Authenticate(_ context.Context, token string) (Caller, error) {
	b, err := os.ReadFile(c.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return Caller{}, errors.New("unknown workload credential (no workloads are registered)")
	}
	if err != nil {
		return Caller{}, fmt.Errorf("workload credentials: %w", err)
	}
	m, err := parseCredentials(b)
	if err != nil {
		return Caller{}, fmt.Errorf("workload credentials %s: %w", c.Path, err)
	}
	sum := sha256.Sum256([]byte(token))
	caller, ok := m[hex.EncodeToString(sum[:])]
	if !ok {
		return Caller{}, errors.New("unknown workload credential")
	}
	return caller, nil
}

func parseCredentials(b []byte) (map[string]Caller, error) {
	m := map[string]Caller{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 || len(f[0]) != 64 {
			return nil, fmt.Errorf("line %d: want \"SHA256HEX NAMESPACE SERVICEACCOUNT\"", n)
		}
		if _, err := hex.DecodeString(f[0]); err != nil {
			return nil, fmt.Errorf("line %d: %q is not a hex SHA-256", n, f[0])
		}
		m[strings.ToLower(f[0])] = Caller{Namespace: f[1], ServiceAccount: f[2]}
	}
	return m, sc.Err()
}

// NewToken returns a random workload credential (256 bits, hex).
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// WriteCredentials writes the credentials file for tokens (token -> its
// workload), atomically and readable only by its owner.
func WriteCredentials(path string, tokens map[string]Caller) error {
	lines := make([]string, 0, len(tokens))
	for tok, c := range tokens {
		sum := sha256.Sum256([]byte(tok))
		lines = append(lines, hex.EncodeToString(sum[:])+" "+c.Namespace+" "+c.ServiceAccount)
	}
	sort.Strings(lines)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	body := "# sha256(token) namespace serviceaccount, written by trellis local up\n" + strings.Join(lines, "\n") + "\n"
	return writeFileAtomic(path, []byte(body), 0o600)
}

// ClusterIDMetadata is the gRPC metadata key a proxy names its cluster in
// (Istio's agent sends "ClusterID"; gRPC lower-cases keys).
const ClusterIDMetadata = "clusterid"

// RequestCluster is the cluster the calling proxy names in its request
// metadata, or "" when it names none.
func RequestCluster(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(ClusterIDMetadata); len(v) == 1 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

// ClusterTokenReview authenticates ServiceAccount tokens against the API
// server of the cluster the calling proxy names (its CLUSTER_ID, sent as
// the ClusterID metadata), as istiod does in multi-cluster meshes: a
// proxy of this cluster, or one naming no cluster, is reviewed by Local;
// a proxy of a remote cluster by that cluster's API server, reached with
// the kubeconfig of its remote secret. A cluster Remote does not know is
// refused.
type ClusterTokenReview struct {
	// LocalCluster is this trellisd's cluster ID (--cluster-id).
	LocalCluster string
	// Local is this cluster's API server.
	Local kubernetes.Interface
	// Remote returns the client of a joined remote cluster, or an error
	// saying why the cluster is not joined.
	Remote func(cluster string) (kubernetes.Interface, error)
}

// Authenticate picks the API server by the caller's cluster and asks it
// for a TokenReview (audience istio-ca, a ServiceAccount).
func (c ClusterTokenReview) Authenticate(ctx context.Context, token string) (Caller, error) {
	cluster := RequestCluster(ctx)
	if cluster == "" || cluster == c.LocalCluster {
		return TokenReview{Client: c.Local}.Authenticate(ctx, token)
	}
	if c.Remote == nil {
		return Caller{}, fmt.Errorf("cluster %q is unknown to this CA (its own cluster is %q and it joins no remote clusters)", cluster, c.LocalCluster)
	}
	client, err := c.Remote(cluster)
	if err != nil {
		return Caller{}, fmt.Errorf("cluster %q is unknown to this CA (its own cluster is %q): %v", cluster, c.LocalCluster, err)
	}
	caller, err := TokenReview{Client: client}.Authenticate(ctx, token)
	if err != nil {
		return Caller{}, fmt.Errorf("cluster %s: %w", cluster, err)
	}
	return caller, nil
}
