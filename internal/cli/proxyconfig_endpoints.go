package cli

import (
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// runEndpoints is `proxy-config endpoint`: the hosts of /clusters with
// their health.
func runEndpoints(t *pcTarget, f *proxyConfigFlags, w io.Writer) error {
	b, err := t.clustersJSON()
	if err != nil {
		return err
	}
	return printEndpoints(b, f, w)
}

// clustersJSON is /clusters?format=json, or for a saved dump the same
// shape built from its endpoint configs (EDS health only).
func (t *pcTarget) clustersJSON() ([]byte, error) {
	if t.file == "" {
		return t.get("/clusters?format=json")
	}
	d, err := t.dump()
	if err != nil {
		return nil, err
	}
	out := &adminv3.Clusters{}
	for _, e := range d.endpoints {
		cs := &adminv3.ClusterStatus{Name: e.GetClusterName()}
		for _, le := range e.GetEndpoints() {
			for _, lbe := range le.GetLbEndpoints() {
				hs := lbe.GetHealthStatus()
				if hs == corev3.HealthStatus_UNKNOWN {
					hs = corev3.HealthStatus_HEALTHY
				}
				cs.HostStatuses = append(cs.HostStatuses, &adminv3.HostStatus{
					Address:      lbe.GetEndpoint().GetAddress(),
					HealthStatus: &adminv3.HostHealthStatus{EdsHealthStatus: hs},
					Priority:     le.GetPriority(),
				})
			}
		}
		out.ClusterStatuses = append(out.ClusterStatuses, cs)
	}
	return protojson.Marshal(out)
}

func printEndpoints(b []byte, f *proxyConfigFlags, w io.Writer) error {
	var cs adminv3.Clusters
	if err := unmarshalDump.Unmarshal(b, &cs); err != nil {
		return fmt.Errorf("decode /clusters: %w", err)
	}
	type row struct {
		endpoint, status, outlier, cluster string
		host                               *adminv3.HostStatus
	}
	var rows []row
	for _, c := range cs.GetClusterStatuses() {
		if f.cluster != "" && c.GetName() != f.cluster {
			continue
		}
		for _, h := range c.GetHostStatuses() {
			sa := h.GetAddress().GetSocketAddress()
			if f.address != "" && sa.GetAddress() != f.address || f.port != 0 && int(sa.GetPortValue()) != f.port {
				continue
			}
			status := h.GetHealthStatus().GetEdsHealthStatus().String()
			if h.GetHealthStatus().GetFailedActiveHealthCheck() {
				status = "UNHEALTHY"
			}
			if f.status != "" && !strings.EqualFold(status, f.status) {
				continue
			}
			outlier := "OK"
			if h.GetHealthStatus().GetFailedOutlierCheck() {
				outlier = "FAILED"
			}
			rows = append(rows, row{net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), status, outlier, c.GetName(), h})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].endpoint != rows[j].endpoint {
			return rows[i].endpoint < rows[j].endpoint
		}
		return rows[i].cluster < rows[j].cluster
	})
	if f.output != "short" {
		var hs []*adminv3.ClusterStatus
		for _, c := range cs.GetClusterStatuses() {
			keep := &adminv3.ClusterStatus{Name: c.GetName(), AddedViaApi: c.GetAddedViaApi(), EdsServiceName: c.GetEdsServiceName()}
			for _, r := range rows {
				if r.cluster == c.GetName() {
					keep.HostStatuses = append(keep.HostStatuses, r.host)
				}
			}
			if len(keep.HostStatuses) > 0 {
				hs = append(hs, keep)
			}
		}
		return printProtos(w, f.output, hs)
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "ENDPOINT\tSTATUS\tOUTLIER CHECK\tCLUSTER")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.endpoint, r.status, r.outlier, r.cluster)
	}
	return tw.Flush()
}
