package httpconn

import (
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/filter"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/route"
)

// filterStream is the HTTP filter chain's view of one exchange: it
// implements filter.Stream. It lives inside the exchange, so handing it to
// the filters allocates nothing.
type filterStream struct {
	e     *exchange
	route *route.Route
	// resp holds the response headers filters set, in the order they set
	// them; encode applies them to the response.
	resp http1.Headers
}

// runFilters selects the route and runs the request through the
// connection manager's filters in config order, until one stops (the
// router, last, always does).
func (e *exchange) runFilters() {
	fs := &e.filters
	fs.e, fs.route, fs.resp = e, nil, fs.resp[:0]
	if rc := e.cfg.Routes.Load(); rc != nil {
		fs.route = rc.Select(&e.q)
	}
	if fs.route != nil {
		e.rec.RouteName = fs.route.Name
	}
	for i := range e.cfg.Filters {
		l := &e.cfg.Filters[i]
		var perRoute any
		if fs.route != nil {
			perRoute = fs.route.Filters.For(l)
		}
		if l.Filter.Decode(fs, perRoute) == filter.Stop {
			return
		}
	}
}

// encode sets the filters' response headers on h, the latest set first so
// that the earliest filter's value wins, as Envoy's reverse encode order
// has it.
func (fs *filterStream) encode(h *http1.Headers) {
	for i := len(fs.resp) - 1; i >= 0; i-- {
		h.SetB(fs.resp[i].Name, fs.resp[i].Value)
	}
}

func (fs *filterStream) Header(name string) ([]byte, bool) { return fs.e.q.Headers.Get(name) }

func (fs *filterStream) Method() []byte { return fs.e.q.Method }

func (fs *filterStream) Forwarding() bool {
	return fs.route != nil && fs.route.Action == route.ActionRoute
}

func (fs *filterStream) Rand() uint64 { return fs.e.m.rand() }

func (fs *filterStream) Delay(d time.Duration) {
	fs.e.rec.Flags |= FlagDI
	fs.e.m.sleep(d)
}

func (fs *filterStream) Abort(status, grpcStatus int, body string) {
	if grpcStatus >= 0 && fs.e.grpc {
		fs.e.localGRPC(grpcStatus, body, FlagFI)
		return
	}
	fs.e.localReply(status, body, FlagFI, nil)
}

func (fs *filterStream) Reply(status int) { fs.e.localReply(status, "", 0, nil) }

func (fs *filterStream) SetResponseHeader(name, value []byte) {
	fs.resp = append(fs.resp, http1.Header{Name: name, Value: value})
}

func (fs *filterStream) Forward() { fs.e.rt.serve(fs.route) }
