package webhook

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/config/validate"
	"github.com/trellis-mesh/trellis/internal/inject"
)

// DefaultPort is Istio's webhook port.
const DefaultPort = 15017

// maxBody bounds an AdmissionReview (the API server's own limit is 3 MiB
// per object; reviews carry the object twice for updates).
const maxBody = 8 << 20

// Server answers the API server's admission calls. The zero value serves
// nothing; set Inject and/or Validate.
type Server struct {
	// Inject, when set, serves /inject.
	Inject *Injector
	// Validate serves /validate when true.
	Validate bool
	// Log receives one line per refused or failed review; nil discards.
	Log *slog.Logger
}

// Injector decides and performs sidecar injection.
type Injector struct {
	config atomic.Pointer[inject.Config]
	// NamespaceLabels returns a namespace's labels (from an informer's
	// lister in trellisd). Nil trusts the webhook configuration's selectors
	// and applies only the pod's own opt-in/opt-out.
	NamespaceLabels func(ctx context.Context, namespace string) (map[string]string, error)
	// ClusterNamespaceLabels returns a namespace's labels in another
	// cluster of the mesh, for pods of a remote cluster whose webhook
	// calls /inject/cluster/NAME/net/NETWORK (primary-remote). Nil refuses
	// such pods.
	ClusterNamespaceLabels func(ctx context.Context, cluster, namespace string) (map[string]string, error)
	// ServerVersion tells the API server's version (the discovery
	// client's /version), which picks the proxy's form: a native sidecar
	// on Kubernetes 1.29 and later, the fallback before (the injection
	// config's nativeSidecars and the pod's sidecar.istio.io/nativeSidecar
	// override it). It is asked at most once per VersionTTL. Nil means the
	// version is unknown and the fallback form, which runs everywhere, is
	// injected.
	ServerVersion discovery.ServerVersionInterface
	// VersionTTL is how long a discovered version is used; zero means a
	// minute.
	VersionTTL time.Duration

	mu        sync.Mutex
	target    inject.Target
	checkedAt time.Time
}

// Target returns the cluster's injection target, from ServerVersion.
// When discovery fails it keeps the last known target (the fallback form
// before the first success) and reports the error.
func (i *Injector) Target() (inject.Target, error) {
	if i.ServerVersion == nil {
		return inject.Target{}, nil
	}
	ttl := i.VersionTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.checkedAt.IsZero() && time.Since(i.checkedAt) < ttl {
		return i.target, nil
	}
	v, err := i.ServerVersion.ServerVersion()
	if err != nil {
		return i.target, fmt.Errorf("discover the API server version: %w", err)
	}
	t, err := inject.TargetForVersion(v.Major, v.Minor, v.GitVersion)
	if err != nil {
		return i.target, err
	}
	i.target, i.checkedAt = t, time.Now()
	return t, nil
}

// NewInjector returns an Injector using cfg.
func NewInjector(cfg inject.Config) *Injector {
	i := &Injector{}
	i.SetConfig(cfg)
	return i
}

// SetConfig replaces the injection config (e.g. when the ConfigMap
// changes); in-flight reviews keep the config they started with.
func (i *Injector) SetConfig(cfg inject.Config) { i.config.Store(&cfg) }

// Config returns the current config.
func (i *Injector) Config() inject.Config { return *i.config.Load() }

// Handler routes /inject, /validate and /healthz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	if s.Inject != nil {
		mux.HandleFunc("/inject", s.review(s.inject))
		mux.HandleFunc("/inject/", func(w http.ResponseWriter, r *http.Request) {
			p, err := parseInjectPath(r.URL.Path)
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			s.review(s.inject)(w, r.WithContext(context.WithValue(r.Context(), injectPathKey{}, p)))
		})
	}
	if s.Validate {
		mux.HandleFunc("/validate", s.review(s.validate))
		mux.HandleFunc("/validate/", s.review(s.validate))
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	return mux
}

// Serve runs the HTTPS server on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener, tlsCfg *tls.Config) error {
	srv := &http.Server{Handler: s.Handler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		case <-done:
		}
	}()
	err := srv.ServeTLS(l, "", "")
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) logf(msg string, args ...any) {
	if s.Log != nil {
		s.Log.Info(msg, args...)
	}
}

type reviewFunc func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

// review decodes an AdmissionReview, calls f and writes the answer.
func (s *Server) review(f reviewFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "admission reviews are POSTed", http.StatusMethodNotAllowed)
			return
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			http.Error(w, "content type: got "+ct+", want application/json", http.StatusUnsupportedMediaType)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
		if err != nil || len(body) > maxBody {
			http.Error(w, "admission review unreadable or larger than 8 MiB", http.StatusRequestEntityTooLarge)
			return
		}
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
			http.Error(w, fmt.Sprintf("not an admission.k8s.io/v1 AdmissionReview: %v", err), http.StatusBadRequest)
			return
		}
		resp := f(r.Context(), in.Request)
		resp.UID = in.Request.UID
		out := admissionv1.AdmissionReview{TypeMeta: in.TypeMeta, Response: resp}
		if out.APIVersion == "" {
			out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}

func deny(code int32, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: msg, Reason: metav1.StatusReasonInvalid}}
}

func allow() *admissionv1.AdmissionResponse { return &admissionv1.AdmissionResponse{Allowed: true} }

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

func (s *Server) inject(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return allow()
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny(http.StatusBadRequest, "decode pod: "+err.Error())
	}
	cfg := s.Inject.Config()
	nsLabels := map[string]string{inject.LabelNSInjection: "enabled"}
	p, _ := ctx.Value(injectPathKey{}).(injectPath)
	lookup := s.Inject.NamespaceLabels
	if p.cluster != "" && p.cluster != cfg.ClusterID {
		// A remote cluster's pod: its namespace is in that cluster.
		if s.Inject.ClusterNamespaceLabels == nil {
			return deny(http.StatusBadRequest, fmt.Sprintf("sidecar injection: this webhook does not serve cluster %q (it injects for %q)", p.cluster, cfg.ClusterID))
		}
		lookup = func(ctx context.Context, ns string) (map[string]string, error) {
			return s.Inject.ClusterNamespaceLabels(ctx, p.cluster, ns)
		}
	}
	if p.cluster != "" {
		cfg.ClusterID = p.cluster
	}
	if p.network != "" {
		cfg.Network = p.network
	}
	if lookup != nil {
		l, err := lookup(ctx, req.Namespace)
		if err != nil {
			s.logf("inject: namespace lookup failed; not injecting", "namespace", req.Namespace, "err", err)
			return deny(http.StatusInternalServerError, fmt.Sprintf("sidecar injection: read namespace %s: %v", req.Namespace, err))
		}
		nsLabels = l
	}
	d := inject.Decide(cfg, &pod, req.Namespace, nsLabels)
	if !d.Inject {
		return allow()
	}
	target, err := s.Inject.Target()
	if err != nil {
		s.logf("inject: server version unknown; using the last known form", "err", err)
	}
	out, err := inject.Pod(cfg, target, &pod)
	if err != nil {
		s.logf("inject: refused", "namespace", req.Namespace, "pod", pod.Name+pod.GenerateName, "err", err)
		return deny(http.StatusUnprocessableEntity, "sidecar injection: "+err.Error())
	}
	ops := []patchOp{
		{Op: "add", Path: "/metadata/annotations", Value: out.Annotations},
		{Op: "add", Path: "/metadata/labels", Value: out.Labels},
		{Op: "add", Path: "/spec", Value: out.Spec},
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return deny(http.StatusInternalServerError, "encode patch: "+err.Error())
	}
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt}
}

func (s *Server) validate(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return allow()
	}
	source := "kube:" + req.Kind.Kind + "/" + req.Namespace + "/" + req.Name
	res, err := config.ParseWithOptions(req.Object.Raw, source, config.ParseOptions{DefaultNamespace: req.Namespace})
	if err != nil {
		return deny(http.StatusBadRequest, err.Error())
	}
	var msgs, warnings []string
	for _, e := range res.Errors {
		msgs = append(msgs, issueText(e))
	}
	for _, r := range res.Resources {
		v := validate.Resource(r)
		for _, is := range v.Errors {
			msgs = append(msgs, issueText(is))
		}
		// Fail closed: a user must not believe a policy is in force when
		// Trellis would ignore it.
		for _, is := range v.NotEnforced {
			msgs = append(msgs, issueText(is))
		}
		for _, is := range v.Warnings {
			warnings = append(warnings, issueText(is))
		}
	}
	if len(msgs) > 0 {
		s.logf("validate: refused", "object", source, "errors", len(msgs))
		return deny(http.StatusUnprocessableEntity, "admission webhook \"validation.trellis.io\" denied the request: "+strings.Join(msgs, "; "))
	}
	resp := allow()
	resp.Warnings = warnings
	return resp
}

// issueText drops the source (the API server already names the object)
// and keeps the field path and message.
func issueText(err error) string {
	var is *config.Issue
	if errors.As(err, &is) {
		c := *is
		c.Source = ""
		return c.String()
	}
	var iv config.Issue
	if errors.As(err, &iv) {
		iv.Source = ""
		return iv.String()
	}
	return err.Error()
}

// injectPath is what an /inject/KEY/VALUE/... path says (Istio's form for
// remote clusters' webhooks: /inject/cluster/NAME/net/NETWORK): the
// cluster and network the pod is in.
type injectPath struct{ cluster, network string }

type injectPathKey struct{}

func parseInjectPath(path string) (injectPath, error) {
	var p injectPath
	rest := strings.Trim(strings.TrimPrefix(path, "/inject"), "/")
	if rest == "" {
		return p, nil
	}
	parts := strings.Split(rest, "/")
	if len(parts)%2 != 0 {
		return p, fmt.Errorf("injection path %q: want /inject/cluster/NAME/net/NETWORK (key/value pairs)", path)
	}
	for i := 0; i < len(parts); i += 2 {
		k, v := parts[i], parts[i+1]
		if v == "" {
			return p, fmt.Errorf("injection path %q: %s has an empty value", path, k)
		}
		switch k {
		case "cluster":
			p.cluster = v
		case "net":
			p.network = v
		default:
			return p, fmt.Errorf("injection path %q: unknown key %q; want cluster and net", path, k)
		}
	}
	return p, nil
}
