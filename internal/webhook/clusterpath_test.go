package webhook_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/webhook"
)

// A remote cluster's webhook calls /inject/cluster/NAME/net/NETWORK: the
// pod gets that cluster and network in its proxy's metadata, and its
// namespace is looked up in that cluster; malformed paths and clusters
// the injector cannot look up are refused with the reason.
func TestInjectPathNamesTheCluster(t *testing.T) {
	cfg := inject.DefaultConfig()
	cfg.ClusterID = "cluster1"
	inj := webhook.NewInjector(cfg)
	inj.NamespaceLabels = func(context.Context, string) (map[string]string, error) {
		return map[string]string{inject.LabelNSInjection: "disabled"}, nil
	}
	var asked []string
	inj.ClusterNamespaceLabels = func(_ context.Context, cluster, ns string) (map[string]string, error) {
		asked = append(asked, cluster+"/"+ns)
		return map[string]string{inject.LabelNSInjection: "enabled"}, nil
	}
	h := (&webhook.Server{Inject: inj}).Handler()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "worker", Namespace: "seed"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "worker"}}}}
	raw, _ := json.Marshal(pod)
	req := admissionv1.AdmissionRequest{UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create,
		Namespace: "seed", Object: runtime.RawExtension{Raw: raw}}

	resp := review(t, h, "/inject/cluster/cluster2/net/network2", req)
	if !resp.Allowed || len(resp.Patch) == 0 {
		t.Fatalf("remote pod: got allowed %v, patch %d bytes, result %v; want injected", resp.Allowed, len(resp.Patch), resp.Result)
	}
	for _, want := range []string{`"name":"ISTIO_META_CLUSTER_ID","value":"cluster2"`, `"name":"ISTIO_META_NETWORK","value":"network2"`} {
		if !strings.Contains(string(resp.Patch), want) {
			t.Errorf("patch lacks %s", want)
		}
	}
	if len(asked) != 1 || asked[0] != "cluster2/seed" {
		t.Errorf("namespace looked up in %v, want cluster2/seed", asked)
	}
	// The local path uses the local namespace (disabled here).
	if resp := review(t, h, "/inject", req); len(resp.Patch) != 0 {
		t.Errorf("local pod in a disabled namespace: got a patch")
	}
	for _, c := range []struct{ path, want string }{
		{"/inject/cluster", "key/value pairs"},
		{"/inject/cluster/c2/zone/z1", `unknown key "zone"`},
	} {
		rec := post(h, c.path, "application/json", "{}")
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), c.want) {
			t.Errorf("%s: got %d %q, want 404 saying %s", c.path, rec.Code, rec.Body, c.want)
		}
	}
	inj.ClusterNamespaceLabels = nil
	if resp := review(t, h, "/inject/cluster/cluster2", req); resp.Allowed || !strings.Contains(resp.Result.Message, `does not serve cluster "cluster2"`) {
		t.Errorf("no remote lookup: got allowed %v %v, want refused naming cluster2", resp.Allowed, resp.Result)
	}
}
