package inject

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	"sigs.k8s.io/yaml"
)

// Annotations choosing the sidecar's lifecycle form (Istio's).
const (
	AnnNativeSidecar = "sidecar.istio.io/nativeSidecar"
	AnnProxyConfig   = "proxy.istio.io/config"
)

// Lifecycle probe and hook settings of the injected proxy.
const (
	// WaitSubcommand (`trellis-proxy wait`) is the fallback form's postStart hook: it returns once
	// the proxy reports ready on HealthPort, so the kubelet starts the app
	// containers (which follow the proxy) only then.
	WaitSubcommand = "wait"
	// nativeMinMinor is the first Kubernetes 1.x whose kubelets run init
	// containers with restartPolicy: Always by default (SidecarContainers,
	// beta and on in 1.29).
	nativeMinMinor = 29
)

// Target is what injection knows about the cluster the pod will run on.
type Target struct {
	// NativeSidecars says the cluster runs init containers with
	// restartPolicy: Always as sidecars (Kubernetes 1.29+).
	NativeSidecars bool
	// Server names the cluster's version in messages ("Kubernetes
	// v1.28.3"); empty means unknown.
	Server string
}

// TargetForVersion returns the Target of a Kubernetes API server from
// its discovery version (major "1", minor "28" or "28+", as /version
// reports them; gitVersion for messages).
func TargetForVersion(major, minor, gitVersion string) (Target, error) {
	t := Target{Server: "Kubernetes " + gitVersion}
	if gitVersion == "" {
		t.Server = "Kubernetes " + major + "." + minor
	}
	maj, err := strconv.Atoi(strings.TrimSuffix(major, "+"))
	if err != nil {
		return t, fmt.Errorf("server version: major %q is not a number", major)
	}
	min, err := strconv.Atoi(strings.TrimSuffix(minor, "+"))
	if err != nil {
		return t, fmt.Errorf("server version: minor %q is not a number", minor)
	}
	t.NativeSidecars = maj > 1 || (maj == 1 && min >= nativeMinMinor)
	return t, nil
}

// ParseKubeVersion reads a version such as "1.28", "v1.32.13" or "1.29+"
// (kube-inject's --kube-version) into a Target.
func ParseKubeVersion(v string) (Target, error) {
	s := strings.TrimPrefix(strings.TrimSpace(v), "v")
	parts := strings.SplitN(s, ".", 3)
	if len(parts) < 2 {
		return Target{}, fmt.Errorf("%q: want MAJOR.MINOR, e.g. 1.32", v)
	}
	t, err := TargetForVersion(parts[0], parts[1], "v"+s)
	if err != nil {
		return Target{}, fmt.Errorf("%q: want MAJOR.MINOR, e.g. 1.32", v)
	}
	return t, nil
}

// lifecycle is how the proxy of one pod starts and stops.
type lifecycle struct {
	native bool
	// hold (fallback form only): the proxy goes first and a postStart hook
	// holds the app until it is ready.
	hold        bool
	drain       time.Duration
	concurrency int64
}

// podLifecycle resolves the form for a pod: the pod's
// sidecar.istio.io/nativeSidecar annotation, else the injector's
// nativeSidecars value, else what the cluster supports; then
// proxy.istio.io/config over the mesh-wide defaults.
func podLifecycle(cfg Config, target Target, ann map[string]string) (lifecycle, error) {
	lc := lifecycle{hold: cfg.HoldApplicationUntilProxyStarts, concurrency: cfg.Concurrency}
	drain, err := parseDrain(cfg.TerminationDrainDuration)
	if err != nil {
		return lc, fmt.Errorf("injection config: terminationDrainDuration: %w", err)
	}
	lc.drain = drain

	switch strings.ToLower(cfg.NativeSidecars) {
	case "", "auto":
		lc.native = target.NativeSidecars
	case "true":
		lc.native = true
	case "false":
		lc.native = false
	default:
		return lc, fmt.Errorf("injection config: nativeSidecars: got %q, want auto, true or false", cfg.NativeSidecars)
	}
	if v, ok := ann[AnnNativeSidecar]; ok {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true":
			if !target.NativeSidecars && target.Server != "" {
				return lc, fmt.Errorf("metadata.annotations[%s]: %s does not run native sidecars (Kubernetes 1.29 or later does); remove the annotation or set it to \"false\"", AnnNativeSidecar, target.Server)
			}
			lc.native = true
		case "false":
			lc.native = false
		default:
			return lc, fmt.Errorf("metadata.annotations[%s]: got %q, want \"true\" or \"false\"", AnnNativeSidecar, v)
		}
	}
	if v, ok := ann[AnnProxyConfig]; ok {
		if err := lc.applyProxyConfig(v); err != nil {
			return lc, err
		}
	}
	return lc, nil
}

func parseDrain(s string) (time.Duration, error) {
	if s == "" {
		return 5 * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("got %q, want a duration such as 5s", s)
	}
	return d, nil
}

// honouredProxyConfig are the ProxyConfig fields a pod may set in
// proxy.istio.io/config; anything else is refused rather than ignored.
var honouredProxyConfig = map[protoreflect.Name]bool{
	"hold_application_until_proxy_starts": true,
	"termination_drain_duration":          true,
	"concurrency":                         true,
}

// applyProxyConfig reads proxy.istio.io/config (a YAML ProxyConfig, as in
// Istio) and applies the fields Trellis honours.
func (lc *lifecycle) applyProxyConfig(v string) error {
	at := "metadata.annotations[" + AnnProxyConfig + "]"
	js, err := yaml.YAMLToJSON([]byte(v))
	if err != nil {
		return fmt.Errorf("%s: not YAML: %w", at, err)
	}
	if s := strings.TrimSpace(string(js)); s == "null" || s == "" {
		return nil
	}
	var pc meshv1alpha1.ProxyConfig
	if err := protojson.Unmarshal(js, &pc); err != nil {
		return fmt.Errorf("%s: not a ProxyConfig (e.g. \"holdApplicationUntilProxyStarts: true\"): %w", at, err)
	}
	var unsupported []string
	pc.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !honouredProxyConfig[fd.Name()] {
			unsupported = append(unsupported, fd.JSONName())
		}
		return true
	})
	if len(unsupported) > 0 {
		return fmt.Errorf("%s.%s: not supported per pod by Trellis (holdApplicationUntilProxyStarts, terminationDrainDuration and concurrency are); remove it", at, strings.Join(unsupported, ", "))
	}
	if pc.HoldApplicationUntilProxyStarts != nil {
		lc.hold = pc.HoldApplicationUntilProxyStarts.Value
	}
	if d := pc.TerminationDrainDuration; d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return fmt.Errorf("%s.terminationDrainDuration: got %v, want a non-negative duration such as 5s", at, d)
		}
		lc.drain = d.AsDuration()
	}
	if c := pc.Concurrency; c != nil {
		if c.Value < 0 {
			return fmt.Errorf("%s.concurrency: got %d, want 0 (one worker per CPU) or more", at, c.Value)
		}
		lc.concurrency = int64(c.Value)
	}
	return nil
}
