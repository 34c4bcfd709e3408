package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// printClusters is `proxy-config cluster`.
func printClusters(d *proxyDump, f *proxyConfigFlags, w io.Writer) error {
	var cs []*clusterv3.Cluster
	for _, e := range d.clusters {
		dir, port, subset, fqdn := clusterParts(e.c.GetName())
		if f.fqdn != "" && fqdn != f.fqdn || f.port != 0 && port != strconv.Itoa(f.port) ||
			f.subset != "" && subset != f.subset || f.direction != "" && dir != f.direction {
			continue
		}
		cs = append(cs, e.c)
	}
	if f.output != "short" {
		return printProtos(w, f.output, cs)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "SERVICE FQDN\tPORT\tSUBSET\tDIRECTION\tTYPE\tDESTINATION RULE")
	for _, c := range cs {
		dir, port, subset, fqdn := clusterParts(c.GetName())
		typ := c.GetType().String()
		if c.GetClusterType() != nil {
			typ = c.GetClusterType().GetName()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", fqdn, dash(port), dash(subset), dash(dir), typ,
			istioName(c.GetMetadata().GetFilterMetadata()["istio"].AsMap()))
	}
	return tw.Flush()
}

// clusterParts splits "DIRECTION|PORT|SUBSET|FQDN".
func clusterParts(name string) (direction, port, subset, fqdn string) {
	p := strings.Split(name, "|")
	if len(p) != 4 || (p[0] != "inbound" && p[0] != "outbound") {
		return "", "", "", name
	}
	return p[0], p[1], p[2], p[3]
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
