package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-mesh/trellis/internal/inject"
	"github.com/trellis-mesh/trellis/internal/install"
	"github.com/trellis-mesh/trellis/internal/kube"
	"github.com/trellis-mesh/trellis/internal/version"
)

// meshVersion is `trellis version -o json`.
type meshVersion struct {
	Client       string `json:"clientVersion"`
	ControlPlane string `json:"controlPlaneVersion,omitempty"`
	DataPlane    string `json:"dataPlaneVersion,omitempty"`
	Proxies      int    `json:"proxies"`
	Problem      string `json:"problem,omitempty"`
}

func newVersionCmd() *cobra.Command {
	var (
		cluster   clusterFlags
		remote    bool
		short     bool
		output    string
		namespace string
	)
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the client, control plane and data plane versions",
		Long: "version prints the CLI's version and, unless --remote=false, the control plane's (the trellisd\n" +
			"Deployment's image tag) and the data plane's (the image tags of running proxies: injected\n" +
			"sidecars and gateways) with the number of proxies.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := meshVersion{Client: version.Version}
			if remote && !short {
				c, err := cluster.connect()
				if err != nil {
					v.Problem = "cluster unreachable: " + err.Error()
				} else {
					ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
					defer cancel()
					remoteVersions(ctx, c, namespace, &v)
				}
			}
			return printVersion(cmd.OutOrStdout(), v, remote && !short, output)
		},
	}
	cluster.add(cmd)
	cmd.Flags().BoolVar(&remote, "remote", true, "also report the control and data plane")
	cmd.Flags().BoolVar(&short, "short", false, "print only the client version")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: empty for text, or json")
	cmd.Flags().StringVarP(&namespace, "istioNamespace", "i", "trellis-system", "namespace of the control plane")
	return cmd
}

func printVersion(w io.Writer, v meshVersion, remote bool, output string) error {
	switch output {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "":
	default:
		return fmt.Errorf("--output: got %q, want json or nothing", output)
	}
	if !remote {
		fmt.Fprintln(w, v.Client)
		return nil
	}
	fmt.Fprintf(w, "client version: %s\n", v.Client)
	if v.Problem != "" {
		fmt.Fprintf(w, "control plane version: unknown (%s)\n", v.Problem)
		return nil
	}
	fmt.Fprintf(w, "control plane version: %s\n", v.ControlPlane)
	if v.Proxies == 0 {
		fmt.Fprintln(w, "data plane version: none (no proxies running)")
		return nil
	}
	noun := "proxies"
	if v.Proxies == 1 {
		noun = "proxy"
	}
	fmt.Fprintf(w, "data plane version: %s (%d %s)\n", v.DataPlane, v.Proxies, noun)
	return nil
}

// remoteVersions reads the control plane's image tag and counts the
// proxies: pods with an istio-proxy container or native sidecar
// (injected sidecars and gateways) that are not finished.
func remoteVersions(ctx context.Context, c *kube.Clients, ns string, v *meshVersion) {
	d, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, install.ControlPlaneName, metav1.GetOptions{})
	switch {
	case err != nil && strings.Contains(err.Error(), "not found"):
		v.ControlPlane = fmt.Sprintf("none (no %s Deployment in %s)", install.ControlPlaneName, ns)
	case err != nil:
		v.Problem = "cluster unreachable: " + err.Error()
		return
	default:
		v.ControlPlane = imageTag(d.Spec.Template.Spec.Containers[0].Image)
		if d.Status.AvailableReplicas == 0 {
			v.ControlPlane += " (not available yet)"
		}
	}
	pods, err := c.Kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		v.Problem = "list pods: " + err.Error()
		return
	}
	tags := map[string]int{}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil {
			continue
		}
		// A native sidecar is an init container.
		for _, ct := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			if ct.Name == inject.ProxyContainerName {
				tags[imageTag(ct.Image)]++
				v.Proxies++
				break
			}
		}
	}
	var parts []string
	for t := range tags {
		parts = append(parts, t)
	}
	sort.Strings(parts)
	if len(parts) > 1 {
		for i, t := range parts {
			parts[i] = fmt.Sprintf("%s x%d", t, tags[t])
		}
	}
	v.DataPlane = strings.Join(parts, ", ")
}

func imageTag(image string) string {
	if i := strings.LastIndexByte(image, ':'); i > 0 && !strings.Contains(image[i:], "/") {
		return image[i+1:]
	}
	return "latest"
}
