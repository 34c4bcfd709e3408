package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// EnvAppProbers is the environment variable the injector fills with the
// application's original HTTP, TCP and gRPC probes (JSON:
// {"/app-health/C/KIND": {"httpGet": {...}, "tcpSocket": {"port": N} or
// "grpc": {"port": N, "service": S}, "timeoutSeconds": N}}); the merged
// server answers those paths by calling the application from inside the
// pod.
const EnvAppProbers = "ISTIO_KUBE_APP_PROBERS"

// appProbe is one original probe. Port is a number (the injector resolves
// named ports), or a numeric string.
type appProbe struct {
	HTTPGet *struct {
		Path        string          `json:"path"`
		Port        json.RawMessage `json:"port"`
		Host        string          `json:"host"`
		Scheme      string          `json:"scheme"`
		HTTPHeaders []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"httpHeaders"`
	} `json:"httpGet"`
	TCPSocket *struct {
		Port json.RawMessage `json:"port"`
		Host string          `json:"host"`
	} `json:"tcpSocket"`
	GRPC *struct {
		Port json.RawMessage `json:"port"`
		// Service is the grpc.health.v1 service name; null or absent
		// asks about the server as a whole ("").
		Service *string `json:"service"`
	} `json:"grpc"`
	TimeoutSeconds int32 `json:"timeoutSeconds"`

	url      string
	tcpAddr  string // host:port for a tcpSocket probe
	grpcAddr string // host:port for a grpc probe
	timeout  time.Duration
}

// parseAppProbers reads ISTIO_KUBE_APP_PROBERS.
func parseAppProbers(s string) (map[string]*appProbe, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var m map[string]*appProbe
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object of probes: %w", EnvAppProbers, err)
	}
	for path, p := range m {
		if !strings.HasPrefix(path, "/app-health/") {
			return nil, fmt.Errorf("%s[%q]: path must start with /app-health/", EnvAppProbers, path)
		}
		if p != nil && p.HTTPGet == nil && p.TCPSocket == nil && p.GRPC != nil {
			port := strings.Trim(string(p.GRPC.Port), `"`)
			n, err := strconv.Atoi(port)
			if err != nil || n <= 0 || n > 65535 {
				return nil, fmt.Errorf("%s[%q].grpc.port: %s is not a port number", EnvAppProbers, path, p.GRPC.Port)
			}
			// Kubernetes' gRPC probe has no host: it is the pod's, and
			// the agent runs in the pod.
			p.grpcAddr = net.JoinHostPort("127.0.0.1", port)
			p.timeout = time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
			continue
		}
		if p != nil && p.HTTPGet == nil && p.TCPSocket != nil {
			port := strings.Trim(string(p.TCPSocket.Port), `"`)
			n, err := strconv.Atoi(port)
			if err != nil || n <= 0 || n > 65535 {
				return nil, fmt.Errorf("%s[%q].tcpSocket.port: %s is not a port number", EnvAppProbers, path, p.TCPSocket.Port)
			}
			host := p.TCPSocket.Host
			if host == "" {
				host = "127.0.0.1"
			}
			p.tcpAddr = net.JoinHostPort(host, port)
			p.timeout = time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
			continue
		}
		if p == nil || p.HTTPGet == nil {
			return nil, fmt.Errorf("%s[%q]: one of httpGet, tcpSocket or grpc must be set (only HTTP, TCP and gRPC probes are rewritten)", EnvAppProbers, path)
		}
		port := strings.Trim(string(p.HTTPGet.Port), `"`)
		n, err := strconv.Atoi(port)
		if err != nil || n <= 0 || n > 65535 {
			return nil, fmt.Errorf("%s[%q].httpGet.port: %s is not a port number", EnvAppProbers, path, p.HTTPGet.Port)
		}
		host := p.HTTPGet.Host
		if host == "" {
			host = "127.0.0.1"
		}
		scheme := strings.ToLower(p.HTTPGet.Scheme)
		if scheme == "" {
			scheme = "http"
		}
		if scheme != "http" {
			return nil, fmt.Errorf("%s[%q].httpGet.scheme: %s probes are not supported; use HTTP", EnvAppProbers, path, p.HTTPGet.Scheme)
		}
		rp := p.HTTPGet.Path
		if !strings.HasPrefix(rp, "/") {
			rp = "/" + rp
		}
		p.url = "http://" + net.JoinHostPort(host, port) + rp
		p.timeout = time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	}
	return m, nil
}

// handleAppHealth runs the application's original probe and answers with
// its status (503 when the application cannot be reached).
func (s *Server) handleAppHealth(w http.ResponseWriter, r *http.Request) {
	p := s.probes[r.URL.Path]
	if p == nil {
		http.Error(w, "no application probe at "+r.URL.Path, http.StatusNotFound)
		return
	}
	if p.grpcAddr != "" {
		s.grpcProbe(w, r, p)
		return
	}
	if p.tcpAddr != "" {
		d := net.Dialer{Timeout: p.timeout}
		c, err := d.DialContext(r.Context(), "tcp", p.tcpAddr)
		if err != nil {
			http.Error(w, "application probe failed: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		c.Close()
		w.WriteHeader(http.StatusOK)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, p.url, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for _, h := range p.HTTPGet.HTTPHeaders {
		if strings.EqualFold(h.Name, "host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	req.Header.Set("User-Agent", "kube-probe/trellis")
	client := &http.Client{Timeout: p.timeout, Transport: s.appClient.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		http.Error(w, "application probe failed: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	w.WriteHeader(resp.StatusCode)
}

// grpcProbe makes the grpc.health.v1 Health/Check the kubelet would, in
// plain text on loopback within the probe's timeout: 200 when the app
// answers SERVING, 503 for any other status, an error (an unknown
// service is NOT_FOUND) or a timeout.
func (s *Server) grpcProbe(w http.ResponseWriter, r *http.Request, p *appProbe) {
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	conn, err := grpc.NewClient("passthrough:///"+p.grpcAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent("kube-probe/trellis"))
	if err != nil {
		http.Error(w, "application gRPC probe failed: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	defer conn.Close()
	service := ""
	if p.GRPC.Service != nil {
		service = *p.GRPC.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		http.Error(w, "application gRPC probe failed: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		http.Error(w, "application gRPC probe: service "+strconv.Quote(service)+" is "+st.String(), http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}
