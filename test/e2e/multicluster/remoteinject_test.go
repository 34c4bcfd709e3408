package multicluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube/kubetest"
	"github.com/trellis-mesh/trellis/internal/webhook"
)

// TestPrimaryRemoteInjection: cluster2 installed with the remote profile
// and values.istiodRemote.injectionURL gets an injection webhook calling
// cluster1's trellisd at that URL with the path
// /inject/cluster/cluster2/net/network1. Once cluster2's remote secret is
// applied in cluster1, its trellisd writes the CA it serves the webhook
// with into cluster2's webhook; a pod then created in cluster2's API
// server (namespace labelled istio-injection=enabled) comes back with the
// sidecar injected by cluster1's trellisd, with cluster2's name as its
// CLUSTER_ID and the network from the path.
func TestPrimaryRemoteInjection(t *testing.T) {
	ctx := kubetest.Context(t)
	dir := t.TempDir()
	whAddr := freeAddr(t)
	// cluster1's trellisd as its Deployment runs it: the injection config
	// of the install (its ConfigMap's content), the webhook certificate
	// from its Secret (not mounted here, so trellisd reads the Secret).
	s1, err := install.Load(install.Options{Set: []string{"profile=minimal", "values.global.multiCluster.clusterName=cluster1",
		"values.global.network=network1", "values.global.meshID=mesh1"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(install.InjectConfig(s1))
	injCfg := filepath.Join(dir, "inject-config")
	if err := os.WriteFile(injCfg, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	c1 := startClusterArgs(t, ctx, "cluster1", "network1", "minimal", nil, "--ca-address", "",
		"--webhook-cert-dir", filepath.Join(dir, "not-mounted"), "--webhook-address", whAddr, "--inject-config", injCfg)
	c2 := startClusterWith(t, ctx, "cluster2", "network1", "remote", "values.istiodRemote.injectionURL=https://"+whAddr)

	hooks := c2.env.Clients.Kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	m, err := hooks.Get(ctx, install.InjectorWebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("remote profile's injection webhook: %v", err)
	}
	wantURL := "https://" + whAddr + "/inject/cluster/cluster2/net/network1"
	for _, h := range m.Webhooks {
		if h.ClientConfig.URL == nil || *h.ClientConfig.URL != wantURL || h.ClientConfig.Service != nil {
			t.Fatalf("webhook %s clientConfig: got %+v, want url %s", h.Name, h.ClientConfig, wantURL)
		}
	}

	kubectlApply(t, ctx, c1.env.Clients, createRemoteSecret(t, c2))
	sec, err := c1.env.Clients.Kube.CoreV1().Secrets(systemNS).Get(ctx, install.WebhookSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cluster1's trellisd writing its webhook CA into cluster2's webhook", func() bool {
		m, err := hooks.Get(ctx, install.InjectorWebhookName, metav1.GetOptions{})
		if err != nil || len(m.Webhooks) == 0 {
			return false
		}
		for _, h := range m.Webhooks {
			if !bytes.Equal(h.ClientConfig.CABundle, sec.Data[webhook.KeyCA]) {
				return false
			}
		}
		return true
	})

	k2 := c2.env.Clients.Kube
	if _, err := k2.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS,
		Labels: map[string]string{inject.LabelNSInjection: "enabled"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	var lastErr error
	i := 0
	// Until cluster1's informer has cluster2's new namespace the webhook
	// refuses (failurePolicy Fail); then the pod is created injected.
	waitFor(t, "a pod created in cluster2 injected by cluster1's trellisd", func() bool {
		i++
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("worker-%d", i), Namespace: appNS, Labels: map[string]string{"app": "worker"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "worker"}}}}
		pod, lastErr = k2.CoreV1().Pods(appNS).Create(ctx, p, metav1.CreateOptions{})
		return lastErr == nil
	})
	var proxy *corev1.Container
	for _, l := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range l {
			if l[i].Name == inject.ProxyContainerName {
				proxy = &l[i]
			}
		}
	}
	if proxy == nil {
		t.Fatalf("pod %s in cluster2: no %s container: %+v", pod.Name, inject.ProxyContainerName, pod.Spec)
	}
	env := map[string]string{}
	for _, e := range proxy.Env {
		env[e.Name] = e.Value
	}
	if env["ISTIO_META_CLUSTER_ID"] != "cluster2" || env["ISTIO_META_NETWORK"] != "network1" {
		t.Errorf("injected proxy: CLUSTER_ID %q NETWORK %q, want cluster2 and network1 (from the webhook path)", env["ISTIO_META_CLUSTER_ID"], env["ISTIO_META_NETWORK"])
	}
}
