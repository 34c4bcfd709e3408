package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/trellis-mesh/trellis/internal/local"
	"github.com/trellis-mesh/trellis/internal/local/netns"
)

// pcTarget is where a proxy's admin API is.
type pcTarget struct {
	file    string // a saved config dump instead of a live proxy
	address string
	netns   string // network namespace to dial from, or ""
	timeout time.Duration
}

// resolveTarget turns POD-or-ADDR into an admin address: HOST:PORT as is, a
// workload name through the local mesh's state files, none: --admin-address.
func resolveTarget(args []string, f *proxyConfigFlags) (*pcTarget, error) {
	t := &pcTarget{address: f.adminAddress, timeout: f.timeout, file: f.file}
	if f.file != "" {
		if len(args) > 0 {
			return nil, fmt.Errorf("give either --file or a target, not both")
		}
		return t, nil
	}
	if len(args) == 0 {
		return t, nil
	}
	arg := args[0]
	if _, _, err := net.SplitHostPort(arg); err == nil {
		t.address = arg
		return t, nil
	}
	name, ns, _ := strings.Cut(arg, ".")
	dir := local.StateDir(f.stateDir)
	paths, _ := filepath.Glob(filepath.Join(dir, "local-*.json"))
	var known []string
	for _, p := range paths {
		st, err := local.ReadState(p)
		if err != nil || st == nil {
			continue
		}
		for _, w := range st.Workloads {
			known = append(known, w.Name+"."+w.Namespace)
			if w.Name == name && (ns == "" || ns == w.Namespace) {
				if w.AdminAddress != "" {
					t.address = w.AdminAddress
				}
				t.netns = w.Netns
				return t, nil
			}
		}
	}
	if len(known) == 0 {
		return nil, fmt.Errorf("%q is not HOST:PORT and no local mesh is running (no state files in %s); pass the proxy's admin address, e.g. 127.0.0.1:15000", arg, dir)
	}
	sort.Strings(known)
	return nil, fmt.Errorf("workload %q not found in the local mesh; known workloads: %s", arg, strings.Join(known, ", "))
}

func (t *pcTarget) get(path string) ([]byte, error) { return t.do(http.MethodGet, path) }

func (t *pcTarget) post(path string) ([]byte, error) {
	return t.do(http.MethodPost, path)
}

func (t *pcTarget) do(method, path string) ([]byte, error) {
	tr := &http.Transport{Proxy: nil}
	if t.netns != "" {
		ns := t.netns
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(ctx, ns, network, addr)
		}
	}
	client := &http.Client{Transport: tr, Timeout: t.timeout}
	defer tr.CloseIdleConnections()
	url := "http://" + t.address + path
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return nil, fmt.Errorf("admin request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the proxy's admin API: %w (is the proxy running with its admin on %s?)", err, t.address)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, nil
}
