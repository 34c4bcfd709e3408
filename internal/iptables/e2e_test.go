package iptables_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/trellis-mesh/trellis/internal/iptables"
	"github.com/trellis-mesh/trellis/internal/local/netns"
)

// requireNetAdmin skips tests that need root, ip(8) and iptables.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and change iptables; run the tests as root")
	}
	for _, bin := range []string{"ip", "iptables", "iptables-save", "setpriv", "bash"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s on PATH (scripts/setup.sh installs it): %v", bin, err)
		}
	}
}

// pair is two namespaces joined by a veth: the client (10.250.N.1) and the
// server (10.250.N.2 and 10.250.N.3).
type pair struct {
	client, server string
	clientIP       string
	serverIP       string
	serverIP2      string
}

func newPair(t *testing.T) pair {
	t.Helper()
	ctx := context.Background()
	var b [3]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	octet := int(b[0])%200 + 20
	p := pair{
		client: "t6c-" + id, server: "t6s-" + id,
		clientIP: fmt.Sprintf("10.250.%d.1", octet), serverIP: fmt.Sprintf("10.250.%d.2", octet), serverIP2: fmt.Sprintf("10.250.%d.3", octet),
	}
	for _, ns := range []string{p.client, p.server} {
		if err := netns.Add(ctx, ns); err != nil {
			t.Fatal(err)
		}
		ns := ns
		t.Cleanup(func() { netns.Delete(context.Background(), ns) })
	}
	ca, sa := "t6c"+id, "t6s"+id
	steps := [][]string{
		{"link", "add", ca, "netns", p.client, "type", "veth", "peer", "name", sa, "netns", p.server},
		{"-n", p.client, "addr", "add", p.clientIP + "/24", "dev", ca},
		{"-n", p.server, "addr", "add", p.serverIP + "/24", "dev", sa},
		{"-n", p.server, "addr", "add", p.serverIP2 + "/24", "dev", sa},
		{"-n", p.client, "link", "set", ca, "up"},
		{"-n", p.server, "link", "set", sa, "up"},
	}
	for _, s := range steps {
		if err := netns.IP(ctx, s...); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// serve answers every connection with "NAME ORIGINAL-DESTINATION".
func serve(t *testing.T, ns, addr, name string) {
	t.Helper()
	l, err := netns.Listen(ns, "tcp4", addr)
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s %s\n", name, originalDst(c))
			c.Close()
		}
	}()
}

// originalDst reads SO_ORIGINAL_DST: where the client meant to connect
// before REDIRECT rewrote the destination.
func originalDst(c net.Conn) string {
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return "?"
	}
	var dst string
	raw.Control(func(fd uintptr) {
		m, err := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if err != nil {
			dst = c.LocalAddr().String()
			return
		}
		a := m.Multiaddr
		dst = fmt.Sprintf("%d.%d.%d.%d:%d", a[4], a[5], a[6], a[7], int(a[2])<<8|int(a[3]))
	})
	return dst
}

// call connects from ns as uid:gid (root when both are 0) and returns the
// first line the other end wrote.
func call(t *testing.T, ns string, uid, gid int, addr string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if uid == 0 && gid == 0 {
		c, err := netns.Dial(ctx, ns, "tcp4", addr)
		if err != nil {
			return "dial error: " + err.Error()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line)
	}
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "setpriv",
		fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", gid), "--clear-groups", "--",
		"bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s && head -n1 <&3", host, port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("dial error: %v: %s", err, out)
	}
	return strings.TrimSpace(string(out))
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// natState is iptables-save without comments and counters.
func natState(t *testing.T, ns string, b iptables.Backend) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, b.Save).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", b.Save, err, out)
	}
	var keep []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		keep = append(keep, counters.ReplaceAllString(l, "[0:0]"))
	}
	return strings.Join(keep, "\n")
}

func TestInterceptionInNetns(t *testing.T) {
	requireNetAdmin(t)
	for _, mode := range []iptables.Mode{iptables.ModeNFT, iptables.ModeLegacy} {
		t.Run(string(mode), func(t *testing.T) {
			if _, err := exec.LookPath("iptables-" + string(mode) + "-restore"); err != nil {
				t.Skipf("iptables-%s not installed", mode)
			}
			testInterception(t, mode)
		})
	}
}

func testInterception(t *testing.T, mode iptables.Mode) {
	ctx := context.Background()
	p := newPair(t)
	clientA := &iptables.Applier{Runner: iptables.ExecRunner{Prefix: []string{"ip", "netns", "exec", p.client}}, Mode: mode}
	serverA := &iptables.Applier{Runner: iptables.ExecRunner{Prefix: []string{"ip", "netns", "exec", p.server}}, Mode: mode}
	backend, err := clientA.Detect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A rule of the user's own, which must survive cleanup untouched.
	userRule := exec.Command("ip", "netns", "exec", p.client, strings.Replace(backend.Save, "-save", "", 1),
		"-t", "nat", "-A", "OUTPUT", "-d", "192.0.2.1/32", "-p", "tcp", "-j", "RETURN")
	if out, err := userRule.CombinedOutput(); err != nil {
		t.Fatalf("add user rule: %v: %s", err, out)
	}
	before := natState(t, p.client, backend)

	clientOpts := iptables.DefaultOptions()
	clientOpts.ExcludeOutboundPorts = []string{"5432"}
	clientOpts.ExcludeOutboundIPRanges = []string{p.serverIP2 + "/32"}
	if err := clientA.Apply(ctx, clientOpts); err != nil {
		t.Fatal(err)
	}
	applied := natState(t, p.client, backend)
	if err := clientA.Apply(ctx, clientOpts); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	if again := natState(t, p.client, backend); again != applied {
		t.Errorf("re-running changed the rules:\ngot\n%s\nwant\n%s", again, applied)
	}
	if err := serverA.Apply(ctx, iptables.DefaultOptions()); err != nil {
		t.Fatal(err)
	}

	serve(t, p.client, "0.0.0.0:15001", "client-outbound")
	serve(t, p.client, "0.0.0.0:15006", "client-inbound")
	serve(t, p.client, "127.0.0.1:9000", "client-local-app")
	serve(t, p.server, "0.0.0.0:15001", "server-outbound")
	serve(t, p.server, "0.0.0.0:15006", "server-inbound")
	for _, port := range []string{"8080", "5432", "15008", "15020", "15021", "15090"} {
		serve(t, p.server, "0.0.0.0:"+port, "server-app-"+port)
	}

	s1, s2 := p.serverIP, p.serverIP2
	tests := []struct {
		name     string
		uid, gid int
		addr     string
		want     string
	}{
		{"app outbound goes to its sidecar's 15001", 0, 0, s1 + ":8080", "client-outbound " + s1 + ":8080"},
		{"app as ordinary user is captured too", 1000, 1000, s1 + ":8080", "client-outbound " + s1 + ":8080"},
		{"proxy uid 1337 is not redirected, server captures inbound on 15006", 1337, 1337, s1 + ":8080", "server-inbound " + s1 + ":8080"},
		{"proxy gid 1337 alone is exempt", 1000, 1337, s1 + ":8080", "server-inbound " + s1 + ":8080"},
		{"excluded outbound port bypasses the sidecar", 0, 0, s1 + ":5432", "server-inbound " + s1 + ":5432"},
		{"excluded outbound range bypasses the sidecar", 0, 0, s2 + ":8080", "server-inbound " + s2 + ":8080"},
		{"loopback to 127.0.0.1 is not captured", 1000, 1000, "127.0.0.1:9000", "client-local-app 127.0.0.1:9000"},
		{"inbound 15008 not captured", 1337, 1337, s1 + ":15008", "server-app-15008 " + s1 + ":15008"},
		{"inbound 15020 not captured", 1337, 1337, s1 + ":15020", "server-app-15020 " + s1 + ":15020"},
		{"inbound 15021 not captured", 1337, 1337, s1 + ":15021", "server-app-15021 " + s1 + ":15021"},
		{"inbound 15090 not captured", 1337, 1337, s1 + ":15090", "server-app-15090 " + s1 + ":15090"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := call(t, p.client, tt.uid, tt.gid, tt.addr); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}

	if err := clientA.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if after := natState(t, p.client, backend); after != before {
		t.Errorf("cleanup left the nat table different:\ngot\n%s\nwant\n%s", after, before)
	}
	if got, want := call(t, p.client, 0, 0, s1+":8080"), "server-inbound "+s1+":8080"; got != want {
		t.Errorf("after cleanup: got %q, want %q", got, want)
	}
	if err := clientA.Cleanup(ctx); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

// TestAutoModeClearsTheOtherBackend: rules left by a legacy run are
// removed when the auto (nft here) backend installs its own, so traffic is
// never captured twice; auto cleanup clears both.
func TestAutoModeClearsTheOtherBackend(t *testing.T) {
	requireNetAdmin(t)
	for _, bin := range []string{"iptables-legacy-save", "iptables-nft-save"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s", bin)
		}
	}
	p := newPair(t)
	ctx := context.Background()
	in := iptables.ExecRunner{Prefix: []string{"ip", "netns", "exec", p.client}}
	auto := &iptables.Applier{Runner: in}
	b, err := auto.Detect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := iptables.ModeLegacy
	if b.Name == iptables.ModeLegacy {
		other = iptables.ModeNFT
	}
	has := func(mode iptables.Mode) bool {
		out, _ := exec.Command("ip", "netns", "exec", p.client, "iptables-"+string(mode)+"-save", "-t", "nat").CombinedOutput()
		return strings.Contains(string(out), "ISTIO_OUTPUT")
	}
	if err := (&iptables.Applier{Runner: in, Mode: other}).Apply(ctx, iptables.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	if !has(other) {
		t.Fatalf("%s: rules not installed", other)
	}
	if err := auto.Apply(ctx, iptables.DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	if has(other) || !has(b.Name) {
		t.Errorf("after auto apply: got rules in %s=%v %s=%v, want only in %s", other, has(other), b.Name, has(b.Name), b.Name)
	}
	if err := auto.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	if has(other) || has(b.Name) {
		t.Errorf("after auto cleanup: got rules in %s=%v %s=%v, want none", other, has(other), b.Name, has(b.Name))
	}
}
