package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/trellis-mesh/trellis/internal/local/netns"
)

// Phases of a case, by when a request started.
const (
	before = iota
	during
	after
	phases
)

var phaseNames = [phases]string{"before", "during", "after"}

// result is one request's outcome.
type result struct {
	phase   int
	latency time.Duration
	code    int    // HTTP status (0: no response) or, for gRPC, the status code
	answer  string // first line of the body, or the transport error
	grpc    bool
}

// ok is whether the request succeeded: HTTP 200 or gRPC OK.
func (r result) ok() bool {
	if r.grpc {
		return r.code == int(codes.OK)
	}
	return r.code == http.StatusOK
}

// key names a failure: "503 no healthy upstream", "0 error: EOF",
// "Unavailable: ...".
func (r result) key() string {
	if r.grpc {
		return fmt.Sprintf("%s: %s", codes.Code(r.code), r.answer)
	}
	return fmt.Sprintf("%d %s", r.code, r.answer)
}

// load sends a steady rate of GET requests from inside a namespace (its
// sockets are captured by that namespace's sidecar, like the app's) until
// stopped, open loop: a request is due every 1/rate whether or not the
// earlier ones have answered.
type load struct {
	url    string
	client *http.Client // the HTTP/1.1 load's
	one    func(phase int) result
	close  func()
	phase  atomic.Int32

	mu      sync.Mutex
	results []result

	stop chan struct{}
	done sync.WaitGroup
}

func startLoad(ns, url string, rate int) *load {
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return netns.Dial(ctx, ns, network, addr)
		},
	}}
	l := runLoad(rate, func(phase int) result { return get(client, url, phase) }, client.CloseIdleConnections)
	l.url, l.client = url, client
	return l
}

// runLoad calls one at rate per second from 64 workers until finished.
func runLoad(rate int, one func(phase int) result, closeFn func()) *load {
	l := &load{one: one, close: closeFn, stop: make(chan struct{})}
	jobs := make(chan int, 4*rate)
	// Enough workers that a slow window (the delay case, a loaded
	// machine) does not overrun the generator: a quarter second of calls.
	workers := max(64, rate/4)
	for range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for phase := range jobs {
				l.record(l.one(phase))
			}
		}()
	}
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		defer close(jobs)
		interval := time.Second / time.Duration(rate)
		start := time.Now()
		for i := 1; ; i++ {
			select {
			case <-l.stop:
				return
			case <-time.After(time.Until(start.Add(time.Duration(i) * interval))):
			}
			select {
			case jobs <- int(l.phase.Load()):
			default: // every worker busy and the queue full: counted as a failure
				l.record(result{phase: int(l.phase.Load()), answer: "load generator overrun"})
			}
		}
	}()
	return l
}

func get(client *http.Client, url string, phase int) result {
	t0 := time.Now()
	resp, err := client.Get(url)
	if err != nil {
		return result{phase: phase, latency: time.Since(t0), answer: "error: " + shortErr(err)}
	}
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return result{phase: phase, latency: time.Since(t0), code: resp.StatusCode, answer: strings.TrimSpace(line)}
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+2:]
	}
	return s
}

func (l *load) record(r result) {
	l.mu.Lock()
	l.results = append(l.results, r)
	l.mu.Unlock()
}

func (l *load) setPhase(p int) { l.phase.Store(int32(p)) }

// finish stops sending, waits for the requests in flight and returns every
// outcome.
func (l *load) finish() []result {
	close(l.stop)
	l.done.Wait()
	l.close()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.results
}

// summary is what a case reports about its requests.
type summary struct {
	sent, failed int
	byCode       map[string]int // "503 no healthy upstream", "0 error: EOF"
	answers      map[string]int // 200 answers by body ("this is bill-service-v1")
	p50, p99     [phases]time.Duration
	count        [phases]int
}

func summarize(rs []result) summary {
	s := summary{sent: len(rs), byCode: map[string]int{}, answers: map[string]int{}}
	var lat [phases][]time.Duration
	for _, r := range rs {
		s.count[r.phase]++
		if r.ok() {
			s.answers[r.answer]++
			lat[r.phase] = append(lat[r.phase], r.latency)
			continue
		}
		s.failed++
		s.byCode[r.key()]++
	}
	for p := range lat {
		d := lat[p]
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		if len(d) > 0 {
			s.p50[p] = d[len(d)/2]
			s.p99[p] = d[len(d)*99/100]
		}
	}
	return s
}

func (s summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sent %d, failed %d", s.sent, s.failed)
	for _, k := range sortedKeys(s.byCode) {
		fmt.Fprintf(&b, " [%s: %d]", k, s.byCode[k])
	}
	b.WriteString("\n  latency of answered requests:")
	for p := range phases {
		fmt.Fprintf(&b, " %s (%d sent) p50 %s p99 %s;", phaseNames[p], s.count[p], ms(s.p50[p]), ms(s.p99[p]))
	}
	b.WriteString("\n  answers:")
	for _, k := range sortedKeys(s.answers) {
		fmt.Fprintf(&b, " %q %d", k, s.answers[k])
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
