// Command sidecar is the helper of bench/sidecar.sh, which measures the
// real sidecar data plane: two trellis-proxy sidecars with the config
// trellisd sends them (telemetry, metadata exchange, retries, auto mTLS
// between the sidecars), interception by `trellis-proxy iptables`, in the
// local mesh of internal/local (what `trellis local up` and the chaos
// tests run), next to HAProxy placed in the same two namespaces.
//
//	sidecar up -bin-dir D -bench B -fortio F -env FILE ...
//	        brings the mesh up (trellisd, a client workload with a sidecar
//	        and no app, a server workload running `sidecar apps`), writes
//	        the namespaces, addresses and PIDs as shell variables to FILE
//	        and holds the mesh until SIGTERM, then removes it
//	sidecar apps -fortio F
//	        the server workload's app: fortio servers (HTTP echo and gRPC
//	        ping) on the mesh ports and on the direct ports, and a gRPC
//	        streaming echo (grpc.testing.TestService/FullDuplexCall)
//	sidecar stream -addr A -streams N -size B -d D
//	        N bidirectional streams on one connection, each sending B-byte
//	        messages back to back for D, counting the echoes: JSON on
//	        stdout
//
// The ports are the constants below; bench/sidecar.sh uses the same.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// Ports inside the server namespace. The mesh ports are the echo service's
// target ports (captured by the server sidecar); the direct ports and
// HAProxy's hop B ports are excluded from inbound capture, as Istio's
// traffic.sidecar.istio.io/excludeInboundPorts does, so the no-mesh path
// and HAProxy reach them without going through trellis-proxy.
const (
	meshHTTP   = 8080
	meshGRPC   = 8079
	meshStream = 8077

	directHTTP   = 8090
	directGRPC   = 8089
	directStream = 8087
)

// haproxyInboundPorts are the listeners of HAProxy's hop B (plaintext
// and mTLS: HTTP/1.1, gRPC, stream), excluded from capture like the
// direct ports.
var haproxyInboundPorts = []int{18080, 18079, 18077, 18180, 18179, 18177}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: sidecar up [flags] | apps [flags] | stream [flags]")
		os.Exit(2)
	}
	ctx := context.Background()
	var err error
	switch os.Args[1] {
	case "up":
		err = up(ctx, os.Args[2:])
	case "apps":
		err = apps(os.Args[2:])
	case "stream":
		err = stream(ctx, os.Args[2:])
	default:
		err = errors.New("unknown command " + os.Args[1] + "; want up, apps or stream")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidecar:", err)
		os.Exit(1)
	}
}
