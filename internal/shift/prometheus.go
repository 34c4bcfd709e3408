package shift

import (
	"context"
	"fmt"
	"strconv"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// DefaultQuery builds the seed's query: the per-second rate, over window,
// of requests the destination proxies of service saw from workload.
func DefaultQuery(destinationService, sourceWorkload string, window time.Duration) string {
	return fmt.Sprintf(`sum(rate(istio_requests_total{reporter="destination",destination_service=%s,source_workload=%s}[%s]))`,
		strconv.Quote(destinationService), strconv.Quote(sourceWorkload), model.Duration(window))
}

// PrometheusSampler evaluates an instant query through Prometheus' HTTP API
// (/api/v1/query) and sums the resulting vector. An empty result (no
// requests yet, so no series) is a rate of 0.
type PrometheusSampler struct {
	api   promv1.API
	query string
	// Timeout bounds one query; default 5 s.
	Timeout time.Duration
}

// NewPrometheusSampler returns a sampler for the server at url.
func NewPrometheusSampler(url, query string) (*PrometheusSampler, error) {
	if query == "" {
		return nil, fmt.Errorf("query: empty; want a PromQL expression giving req/s")
	}
	c, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus %q: %w (want a URL like http://127.0.0.1:9090)", url, err)
	}
	return &PrometheusSampler{api: promv1.NewAPI(c), query: query, Timeout: 5 * time.Second}, nil
}

// Query is the PromQL expression evaluated.
func (p *PrometheusSampler) Query() string { return p.query }

// Rate runs the query now.
func (p *PrometheusSampler) Rate(ctx context.Context) (float64, error) {
	if p.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.Timeout)
		defer cancel()
	}
	// A zero time lets Prometheus evaluate at its own "now".
	v, _, _, err := p.api.Query(ctx, p.query, time.Time{})
	if err != nil {
		return 0, fmt.Errorf("prometheus query %s: %w", p.query, err)
	}
	return sumValue(v)
}

// sumValue reduces an instant-query result to one number.
func sumValue(v model.Value) (float64, error) {
	switch v := v.(type) {
	case model.Vector:
		var sum float64
		for _, s := range v {
			sum += float64(s.Value)
		}
		return sum, nil
	case *model.Scalar:
		return float64(v.Value), nil
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("prometheus answered a %s; want an instant vector or scalar (wrap the query in sum(rate(...)))", v.Type())
}
