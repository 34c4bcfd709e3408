package local

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trellis-mesh/trellis/internal/demoapp"
)

// TestMain lets the test binary play the workloads' processes: the demo
// app, a load client, and a minimal stand-in sidecar that forwards
// captured connections (so the namespace plumbing is tested on its own,
// without the real proxy).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "demoapp":
			// demoapp --name NAME --listen ADDR
			app := &demoapp.App{Name: os.Args[3]}
			if err := app.ListenAndServe(context.Background(), os.Args[5], nil); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Exit(0)
		case "load":
			// load URL CALLS
			var n int
			fmt.Sscan(os.Args[3], &n)
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			res, err := demoapp.Load{URL: os.Args[2], Calls: n, Concurrency: 1, Client: c}.Run(context.Background())
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			json.NewEncoder(os.Stdout).Encode(res)
			os.Exit(0)
		case "caclient":
			caClient(os.Args[2], os.Args[3])
			select {}
		case "fakeproxy":
			fakeProxy(os.Args[2])
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

// fakeProxy forwards 15001 connections to the endpoints of the VIP:PORT
// they were meant for (round robin), and 15006 connections to the app on
// 127.0.0.1 from 127.0.0.6, counting both; 15021 answers /healthz/ready
// and /stats. routes: "VIP:PORT=IP:PORT,IP:PORT;...".
func fakeProxy(routes string) {
	table := map[string][]string{}
	for _, r := range strings.Split(routes, ";") {
		if k, v, ok := strings.Cut(r, "="); ok {
			table[k] = strings.Split(v, ",")
		}
	}
	var outbound, inbound, rr atomic.Int64
	serve := func(addr string, pick func(dst string) (string, *net.Dialer)) {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					up, d := pick(origDst(c))
					if up == "" {
						return
					}
					u, err := d.Dial("tcp", up)
					if err != nil {
						return
					}
					defer u.Close()
					go io.Copy(u, c)
					io.Copy(c, u)
				}()
			}
		}()
	}
	serve(":15001", func(dst string) (string, *net.Dialer) {
		eps := table[dst]
		if len(eps) == 0 {
			return dst, &net.Dialer{}
		}
		outbound.Add(1)
		return eps[int(rr.Add(1))%len(eps)], &net.Dialer{}
	})
	serve(":15006", func(dst string) (string, *net.Dialer) {
		inbound.Add(1)
		_, port, _ := net.SplitHostPort(dst)
		return "127.0.0.1:" + port, &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.6")}}
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz/ready", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "outbound %d\ninbound %d\n", outbound.Load(), inbound.Load())
	})
	fmt.Fprintln(os.Stderr, http.ListenAndServe(":15021", mux))
}

func origDst(c net.Conn) string {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return ""
	}
	var dst string
	raw.Control(func(fd uintptr) {
		m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			return
		}
		a := m.Multiaddr
		dst = fmt.Sprintf("%d.%d.%d.%d:%d", a[4], a[5], a[6], a[7], int(a[2])<<8|int(a[3]))
	})
	return dst
}
