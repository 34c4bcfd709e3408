// Command xdsload measures trellisd at scale: it writes a config directory
// with S ServiceEntry services (2 endpoints each) and a VirtualService,
// starts a real trellisd process on it, connects N simulated proxies
// (Envoy-like Delta ADS clients, one gRPC connection each), then edits the
// VirtualService several times and records, for every proxy, the time from
// the file edit to the proxy's ACK of the new route configuration. It
// reports trellisd's resident memory and CPU from /proc.
//
//	go build -o /tmp/trellisd ./cmd/trellisd
//	go run ./bench/xdsload -trellisd /tmp/trellisd -proxies 2000 -services 1000
//
// Clients and trellisd share the machine, so the clients' CPU competes with
// trellisd's: the convergence times are an upper bound. By default
// (-decode envelope) the simulated proxies do what any proxy must do with a
// response — receive it, read its nonce, version and resource names, ACK it
// — and decode clusters and listeners fully (to follow them to endpoints
// and routes), but skip decoding the 529 KB route table into Envoy types,
// which is the proxy's own cost and would double the shared CPU's load;
// -decode full decodes every resource, as a real proxy does.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/trellis-mesh/trellis/bench/xdsload/mesh"
	"github.com/trellis-mesh/trellis/internal/xds/server/fakeproxy"
)

func main() {
	bin := flag.String("trellisd", "", "path to a built trellisd binary (required)")
	proxies := flag.Int("proxies", 2000, "simulated proxies")
	services := flag.Int("services", 1000, "services (ServiceEntries with 2 endpoints each)")
	changes := flag.Int("changes", 3, "VirtualService edits to measure")
	connectRate := flag.Int("connect-per-second", 1000, "how fast proxies connect")
	debugAddr := flag.String("debug-address", "", "trellisd --debug-address (for pprof while it runs); empty disables")
	decode := flag.String("decode", "envelope", `how much of each response the simulated proxies decode: "envelope" (nonce, versions and names; clusters and listeners fully, to follow them) or "full" (every resource into its Envoy type, as a real proxy)`)
	cpuProfile := flag.String("cpuprofile", "", "write the load generator's own CPU profile of the edits to this file")
	serverProfile := flag.String("trellisd-cpuprofile", "", "write trellisd's CPU profile of the edits (from -debug-address, a free port when empty) to this file")
	flag.BoolVar(&useVHDS, "vhds", false, "the simulated proxies ask for virtual host discovery (Delta VHDS): an edit then sends only the virtual hosts it changed")
	flag.Parse()
	// The simulated proxies' heap is small and short-lived (each response
	// is dropped once ACKed); collecting it less often leaves more of the
	// shared CPU to trellisd. trellisd itself runs with Go's defaults.
	debug.SetGCPercent(400)
	switch *decode {
	case "envelope":
		decodeMode = fakeproxy.DecodeEnvelope
	case "full":
		decodeMode = fakeproxy.DecodeFull
	default:
		fmt.Fprintf(os.Stderr, "xdsload: -decode: got %q, want envelope or full\n", *decode)
		os.Exit(2)
	}
	prof = profiles{self: *cpuProfile, server: *serverProfile, debugAddr: *debugAddr}
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "xdsload: -trellisd is required (go build -o /tmp/trellisd ./cmd/trellisd)")
		os.Exit(2)
	}
	if err := run(*bin, *proxies, *services, *changes, *connectRate, *debugAddr); err != nil {
		fmt.Fprintf(os.Stderr, "xdsload: %v\n", err)
		os.Exit(1)
	}
}

const ns = mesh.Namespace

var decodeMode fakeproxy.DecodeMode

// useVHDS makes the proxies ask for VHDS; convergence is then the ACK of
// the virtual hosts, which carry the edit.
var useVHDS bool

// rxBytes counts the bytes of every response the simulated proxies
// receive (gRPC message payloads on the wire).
type rxBytes struct{ n atomic.Int64 }

func (r *rxBytes) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (r *rxBytes) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (r *rxBytes) HandleConn(context.Context, stats.ConnStats)                       {}
func (r *rxBytes) HandleRPC(_ context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.InPayload); ok {
		r.n.Add(int64(p.WireLength))
	}
}

func writeServices(dir string, n int) error {
	for f := 0; f*100 < n; f++ {
		svcs := mesh.Services(f*100, min(n, (f+1)*100))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("services-%03d.yaml", f)), []byte(svcs), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "dr.yaml"), []byte(mesh.DestinationRule()), 0o644)
}

func writeVS(dir string, w1 int) error {
	vs := mesh.VirtualService(w1)
	tmp := filepath.Join(dir, ".vs.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(vs), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "vs.yaml"))
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// procStats reads a process's resident memory (current and peak, bytes)
// and CPU time (user+system) from /proc.
func procStats(pid int) (rss, hwm int64, cpu time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			if f[0] == "VmRSS:" {
				rss = kb * 1024
			} else {
				hwm = kb * 1024
			}
		}
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	s := string(st)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields after the command: state is f[0]; utime and stime are the
	// 14th and 15th fields of the whole line, f[11] and f[12] here.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	cpu = time.Duration(ut+stt) * time.Second / 100 // USER_HZ is 100 on Linux
	return rss, hwm, cpu, nil
}

func mb(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

func run(bin string, nProxies, nServices, nChanges, rate int, debugAddr string) error {
	dir, err := os.MkdirTemp("", "xdsload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeServices(dir, nServices); err != nil {
		return err
	}
	weight := 90
	if err := writeVS(dir, weight); err != nil {
		return err
	}
	xdsAddr, err := freePort()
	if err != nil {
		return err
	}
	if prof.server != "" && debugAddr == "" {
		if debugAddr, err = freePort(); err != nil {
			return err
		}
		prof.debugAddr = debugAddr
	}
	cmd := exec.Command(bin, "--config-dir", dir, "--xds-address", xdsAddr, "--debug-address", debugAddr, "--metrics-address", "", "--dashboard-address", "", "--ca-address", "")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start trellisd: %w", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	pid := cmd.Process.Pid
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", xdsAddr)
		if err == nil {
			c.Close()
			break
		}
		if i > 600 {
			return fmt.Errorf("trellisd never listened on %s", xdsAddr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rss0, _, cpu0, _ := procStats(pid)
	fmt.Printf("trellisd pid %d with %d services: RSS %s\n", pid, nServices, mb(rss0))

	// Connect the proxies.
	var mu sync.Mutex
	// proxy -> when it ACKed its first route configuration newer than the
	// one before the edit (usually the next state version; a proxy that
	// regenerated late may get a later one directly).
	acks := map[int]time.Time{}
	awaited := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	editType := resourcev3.RouteType
	if useVHDS {
		editType = resourcev3.VirtualHostType
	}
	rx := &rxBytes{}
	clients := make([]*fakeproxy.Client, nProxies)
	conns := make([]*grpc.ClientConn, nProxies)
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for i := 0; i < nProxies; i++ {
		<-tick.C
		// Envoy's HTTP/2 windows for its xDS connection are large (256 MiB
		// per stream by default); a 64 KiB window would make the benchmark
		// measure flow-control round trips instead of trellisd.
		cc, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
			grpc.WithInitialWindowSize(16<<20), grpc.WithInitialConnWindowSize(16<<20), grpc.WithStatsHandler(rx))
		if err != nil {
			return err
		}
		conns[i] = cc
		md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": ns, "LABELS": map[string]any{"app": "load"}})
		node := &corev3.Node{Id: fmt.Sprintf("sidecar~10.250.%d.%d~load-%d.%s~%s.svc.cluster.local", i/250, i%250+1, i, ns, ns),
			Cluster: "load." + ns, Metadata: md}
		id := i
		c, err := fakeproxy.Dial(ctx, cc, node, fakeproxy.Options{Decode: decodeMode, VHDS: useVHDS, OnResponse: func(typeURL, version string, at time.Time) {
			if typeURL != editType {
				return
			}
			mu.Lock()
			if v, err := strconv.Atoi(version); err == nil && awaited > 0 && v >= awaited {
				if _, ok := acks[id]; !ok {
					acks[id] = at
				}
			}
			mu.Unlock()
		}})
		if err != nil {
			return fmt.Errorf("proxy %d: %w", i, err)
		}
		clients[i] = c
	}
	tick.Stop()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer wcancel()
	for i, c := range clients {
		if err := c.Wait(wctx, func(h fakeproxy.Held) bool {
			return h.Count(resourcev3.EndpointType) >= nServices && h.Count(resourcev3.RouteType) > 0 && (!useVHDS || h.Count(resourcev3.VirtualHostType) > 0)
		}); err != nil {
			return fmt.Errorf("proxy %d never got its initial config: %w", i, err)
		}
	}
	rss1, hwm1, cpu1, _ := procStats(pid)
	fmt.Printf("%d proxies connected and synced in %v: trellisd RSS %s (peak %s), CPU %v\n",
		nProxies, time.Since(start).Round(time.Millisecond), mb(rss1), mb(hwm1), (cpu1 - cpu0).Round(time.Millisecond))
	clusters := len(clients[0].Names(resourcev3.ClusterType))
	fmt.Printf("each proxy holds %d clusters, %d endpoints, %d listeners, %d routes, %d virtual hosts over VHDS\n", clusters,
		len(clients[0].Names(resourcev3.EndpointType)), len(clients[0].Names(resourcev3.ListenerType)), len(clients[0].Names(resourcev3.RouteType)),
		len(clients[0].Names(resourcev3.VirtualHostType)))

	stopProf, err := prof.start(nChanges)
	if err != nil {
		return err
	}
	var all []time.Duration
	var cpuChanges time.Duration
	var bytesChanges float64
	for ch := 0; ch < nChanges; ch++ {
		time.Sleep(2 * time.Second) // let the previous push settle
		_, _, cpuA, _ := procStats(pid)
		_, _, selfA, _ := procStats(os.Getpid())
		before := clients[0].Version(editType)
		rxA := rx.n.Load()
		mu.Lock()
		acks = map[int]time.Time{}
		v, _ := strconv.Atoi(before)
		// The file watcher's change is the next state version.
		awaited = v + 1
		mu.Unlock()
		weight = 100 - weight
		if weight == 50 {
			weight = 40
		}
		t0 := time.Now()
		if err := writeVS(dir, weight); err != nil {
			return err
		}
		for i, c := range clients {
			if err := c.Wait(wctx, func(h fakeproxy.Held) bool { return h.Version(editType) != before }); err != nil {
				return fmt.Errorf("change %d: proxy %d: %w", ch, i, err)
			}
		}
		_, _, cpuB, _ := procStats(pid)
		_, _, selfB, _ := procStats(os.Getpid())
		cpuChanges += cpuB - cpuA
		perProxy := float64(rx.n.Load()-rxA) / float64(nProxies)
		bytesChanges += perProxy
		mu.Lock()
		var ds []time.Duration
		for _, at := range acks {
			ds = append(ds, at.Sub(t0))
		}
		mu.Unlock()
		if len(ds) != nProxies {
			return fmt.Errorf("change %d: %d of %d proxies ACKed version %d or later", ch, len(ds), nProxies, awaited)
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Printf("change %d: p50 %v p99 %v max %v, trellisd CPU %v, simulated proxies' CPU %v, %.0f bytes received per proxy\n", ch, pct(ds, 50), pct(ds, 99),
			ds[len(ds)-1].Round(time.Millisecond), (cpuB - cpuA).Round(time.Millisecond), (selfB - selfA).Round(time.Millisecond), perProxy)
		all = append(all, ds...)
	}
	if err := stopProf(); err != nil {
		return err
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	rss2, hwm2, cpu2, _ := procStats(pid)
	fmt.Printf("\nRESULT proxies=%d services=%d changes=%d: convergence p50 %v p99 %v max %v; trellisd RSS %s steady, peak %s; CPU %v total, %v per change; %.0f bytes per change per proxy (vhds=%v)\n",
		nProxies, nServices, nChanges, pct(all, 50), pct(all, 99), all[len(all)-1].Round(time.Millisecond), mb(rss2), mb(hwm2),
		(cpu2 - cpu0).Round(time.Millisecond), (cpuChanges / time.Duration(nChanges)).Round(time.Millisecond), bytesChanges/float64(nChanges), useVHDS)
	return nil
}

// profiles are the CPU profiles taken over the edits.
type profiles struct{ self, server, debugAddr string }

var prof profiles

// start begins the profiles and returns the function that ends them and
// writes the files. trellisd's profile runs for a fixed time long enough for
// the edits (4 s each) since pprof's endpoint takes a duration.
func (p profiles) start(changes int) (stop func() error, err error) {
	var f *os.File
	if p.self != "" {
		if f, err = os.Create(p.self); err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	errc := make(chan error, 1)
	if p.server != "" {
		go func() {
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.debugAddr, 4*changes)
			resp, err := http.Get(url)
			if err != nil {
				errc <- err
				return
			}
			defer resp.Body.Close()
			out, err := os.Create(p.server)
			if err != nil {
				errc <- err
				return
			}
			_, err = io.Copy(out, resp.Body)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			errc <- err
		}()
	} else {
		errc <- nil
	}
	return func() error {
		if f != nil {
			pprof.StopCPUProfile()
			f.Close()
		}
		if err := <-errc; err != nil {
			return fmt.Errorf("trellisd profile: %w", err)
		}
		return nil
	}, nil
}

func pct(ds []time.Duration, p int) time.Duration {
	i := (len(ds)*p + 99) / 100
	if i > 0 {
		i--
	}
	return ds[i].Round(time.Millisecond)
}
