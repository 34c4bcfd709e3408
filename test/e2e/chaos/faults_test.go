package chaos

import (
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// Network faults. The kernel here has no netem (see nfqueue_test.go), so
// loss and resets are iptables rules in the workloads' namespaces
// (statistic match: each packet independently) and delay is an NFQUEUE
// rule whose packets the test releases late.

// iptables adds a filter-table rule in a namespace and returns the func
// that deletes it.
func (ms *mesh) iptables(ns, chain string, rule ...string) func() {
	ms.t.Helper()
	run := func(op string) error {
		args := append([]string{"netns", "exec", ns, "iptables", "-w", op, chain}, rule...)
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := run("-I"); err != nil {
		ms.t.Fatal(err)
	}
	return func() {
		if err := run("-D"); err != nil {
			ms.t.Error(err)
		}
	}
}

// packetLoss drops 1 % of the packets crossing the client's and the
// servers' network interfaces, both ways (loopback traffic between a
// sidecar and its app is untouched). TCP retransmits them: slower, never
// failed.
func (ms *mesh) packetLoss(ns []string, during time.Duration) {
	var undo []func()
	for _, n := range ns {
		undo = append(undo,
			ms.iptables(n, "INPUT", "-i", "eth0", "-m", "statistic", "--mode", "random", "--probability", "0.01", "-j", "DROP"),
			ms.iptables(n, "OUTPUT", "-o", "eth0", "-m", "statistic", "--mode", "random", "--probability", "0.01", "-j", "DROP"))
	}
	time.Sleep(during)
	for _, f := range undo {
		f()
	}
}

// delay holds every packet the client's namespace sends on its interface
// for d (its requests and ACKs reach the servers d late).
func (ms *mesh) delay(ns string, d, during time.Duration) {
	ms.t.Helper()
	const queue = 13
	dl, err := startDelayer(ns, queue, d)
	if err != nil {
		ms.t.Fatalf("delayer in %s: %v", ns, err)
	}
	undo := ms.iptables(ns, "OUTPUT", "-o", "eth0", "-j", "NFQUEUE", "--queue-num", fmt.Sprint(queue), "--queue-bypass")
	time.Sleep(during)
	undo()
	dl.stop()
}

// resets makes the servers' apps (HTTP and gRPC) reset 2 % of their
// connections' data packets from the sidecar: the sidecar sees the app reset the connection
// in the middle of a request, as a crashing or overloaded app does.
func (ms *mesh) resets(ns []string, during time.Duration) {
	var undo []func()
	for _, n := range ns {
		undo = append(undo, ms.iptables(n, "OUTPUT", "-o", "lo", "-p", "tcp", "-m", "multiport", "--dports", fmt.Sprintf("80,%d", grpcTarget), "!", "--syn",
			"-m", "statistic", "--mode", "random", "--probability", "0.02", "-j", "REJECT", "--reject-with", "tcp-reset"))
	}
	time.Sleep(during)
	for _, f := range undo {
		f()
	}
}
