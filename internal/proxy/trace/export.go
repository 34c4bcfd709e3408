package trace

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	collectortracev1 "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

const scopeName = "trellis-proxy"

// otlpRequest builds the OTLP export request for a batch.
func otlpRequest(t Target, spans []*Span) *collectortracev1.ExportTraceServiceRequest {
	out := make([]*tracev1.Span, len(spans))
	for i, s := range spans {
		ps := &tracev1.Span{
			TraceId:           append([]byte(nil), s.TraceID[:]...),
			SpanId:            append([]byte(nil), s.SpanID[:]...),
			Name:              s.Name,
			Kind:              tracev1.Span_SPAN_KIND_SERVER,
			StartTimeUnixNano: uint64(s.Start.UnixNano()),
			EndTimeUnixNano:   uint64(s.End.UnixNano()),
			Attributes:        make([]*commonv1.KeyValue, len(s.Tags)),
		}
		if s.Client {
			ps.Kind = tracev1.Span_SPAN_KIND_CLIENT
		}
		if s.HasParent {
			ps.ParentSpanId = append([]byte(nil), s.ParentID[:]...)
		}
		if s.Error {
			ps.Status = &tracev1.Status{Code: tracev1.Status_STATUS_CODE_ERROR}
		}
		for j, tg := range s.Tags {
			ps.Attributes[j] = &commonv1.KeyValue{Key: tg.Key, Value: &commonv1.AnyValue{Value: &commonv1.AnyValue_StringValue{StringValue: tg.Value}}}
		}
		out[i] = ps
	}
	return &collectortracev1.ExportTraceServiceRequest{ResourceSpans: []*tracev1.ResourceSpans{{
		Resource: &resourcev1.Resource{Attributes: []*commonv1.KeyValue{
			{Key: "service.name", Value: &commonv1.AnyValue{Value: &commonv1.AnyValue_StringValue{StringValue: t.ServiceName}}},
		}},
		ScopeSpans: []*tracev1.ScopeSpans{{Scope: &commonv1.InstrumentationScope{Name: scopeName}, Spans: out}},
	}}}
}

func encodeOTLP(t Target, spans []*Span) ([]byte, error) {
	return proto.Marshal(otlpRequest(t, spans))
}

// zipkinSpan is one span of Zipkin's v2 JSON API.
type zipkinSpan struct {
	TraceID       string            `json:"traceId"`
	ID            string            `json:"id"`
	ParentID      string            `json:"parentId,omitempty"`
	Name          string            `json:"name"`
	Kind          string            `json:"kind"`
	Timestamp     int64             `json:"timestamp"`
	Duration      int64             `json:"duration"`
	LocalEndpoint zipkinEndpoint    `json:"localEndpoint"`
	Tags          map[string]string `json:"tags,omitempty"`
}

type zipkinEndpoint struct {
	ServiceName string `json:"serviceName"`
}

func encodeZipkin(t Target, spans []*Span) ([]byte, error) {
	out := make([]zipkinSpan, len(spans))
	for i, s := range spans {
		z := zipkinSpan{
			TraceID: hex.EncodeToString(s.TraceID[:]), ID: hex.EncodeToString(s.SpanID[:]),
			Name: s.Name, Kind: "SERVER",
			Timestamp: s.Start.UnixMicro(), Duration: max(s.End.Sub(s.Start).Microseconds(), 1),
			LocalEndpoint: zipkinEndpoint{ServiceName: t.ServiceName},
			Tags:          make(map[string]string, len(s.Tags)+1),
		}
		if s.Client {
			z.Kind = "CLIENT"
		}
		if s.HasParent {
			z.ParentID = hex.EncodeToString(s.ParentID[:])
		}
		for _, tg := range s.Tags {
			z.Tags[tg.Key] = tg.Value
		}
		if s.Error {
			z.Tags["error"] = "true"
		}
		out[i] = z
	}
	return json.Marshal(out)
}

// httpExporter posts each batch to the collector (OTLP/HTTP protobuf or
// Zipkin v2 JSON) over connections of the target's cluster.
type httpExporter struct {
	t      Target
	client *http.Client
	encode func(Target, []*Span) ([]byte, error)
	ctype  string
}

func newHTTPExporter(t Target, dial Dialer, encode func(Target, []*Span) ([]byte, error), ctype string) *httpExporter {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			if dial == nil {
				return nil, fmt.Errorf("no cluster manager")
			}
			return dial(ctx, t.Cluster)
		},
		MaxIdleConns: 2, IdleConnTimeout: 30 * time.Second,
	}
	return &httpExporter{t: t, client: &http.Client{Transport: tr, Timeout: timeoutOf(t)}, encode: encode, ctype: ctype}
}

func timeoutOf(t Target) time.Duration {
	if t.Timeout > 0 {
		return t.Timeout
	}
	return 5 * time.Second
}

func (e *httpExporter) Export(ctx context.Context, spans []*Span) error {
	body, err := e.encode(e.t, spans)
	if err != nil {
		return err
	}
	host := e.t.Authority
	if host == "" {
		host = authorityOf(e.t.Cluster)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+host+e.t.Path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("content-type", e.ctype)
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("collector answered %s", resp.Status)
	}
	return nil
}

func (e *httpExporter) Close() { e.client.CloseIdleConnections() }

// authorityOf is the host of an Istio cluster name
// (outbound|PORT|SUBSET|HOST -> HOST), else the name itself.
func authorityOf(cluster string) string {
	n := 0
	for i := 0; i < len(cluster); i++ {
		if cluster[i] == '|' {
			n++
			if n == 3 {
				return cluster[i+1:]
			}
		}
	}
	return cluster
}

// grpcExporter calls the OTLP TraceService over an h2c connection of the
// target's cluster.
type grpcExporter struct {
	cc     *grpc.ClientConn
	client collectortracev1.TraceServiceClient
	t      Target
	err    error
}

func newOTLPGRPC(t Target, dial Dialer) *grpcExporter {
	authority := t.Authority
	if authority == "" {
		authority = authorityOf(t.Cluster)
	}
	cc, err := grpc.NewClient("passthrough:///"+authority,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(authority),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			if dial == nil {
				return nil, fmt.Errorf("no cluster manager")
			}
			return dial(ctx, t.Cluster)
		}))
	if err != nil {
		return &grpcExporter{t: t, err: err}
	}
	return &grpcExporter{cc: cc, client: collectortracev1.NewTraceServiceClient(cc), t: t}
}

func (e *grpcExporter) Export(ctx context.Context, spans []*Span) error {
	if e.err != nil {
		return e.err
	}
	ctx, cancel := context.WithTimeout(ctx, timeoutOf(e.t))
	defer cancel()
	resp, err := e.client.Export(ctx, otlpRequest(e.t, spans))
	if err != nil {
		return err
	}
	if ps := resp.GetPartialSuccess(); ps != nil && ps.GetRejectedSpans() > 0 {
		return fmt.Errorf("collector rejected %d spans: %s", ps.GetRejectedSpans(), ps.GetErrorMessage())
	}
	return nil
}

func (e *grpcExporter) Close() {
	if e.cc != nil {
		e.cc.Close()
	}
}
