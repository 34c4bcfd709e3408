package httpconn

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/trellis-mesh/trellis/internal/proxy/cluster"
	"github.com/trellis-mesh/trellis/internal/proxy/http1"
	"github.com/trellis-mesh/trellis/internal/proxy/lb"
	"github.com/trellis-mesh/trellis/internal/proxy/pool"
)

// attempt is one try of a request on one upstream host. It owns the
// upstream connection (HTTP/1.1) or stream (HTTP/2) from the moment the
// cluster hands it over until it is released for reuse or closed: send
// gets it, and abandon, finish or discard give it up. The router makes one
// attempt per try; an exchange keeps one attempt value and reuses it.
type attempt struct {
	cl   *cluster.Cluster
	host *lb.Host

	// HTTP/1.1: the connection and the response read from it.
	conn *pool.Conn
	resp http1.Response
	body http1.Body

	// HTTP/2: the response and the stream's cancel.
	h2resp   *http.Response
	h2cancel context.CancelFunc
	h2body   *countingBody

	// failure is the transport failure reason of a connect failure (the
	// upstream TLS handshake error), or empty.
	failure string
}

// send makes the attempt: on okResponse the attempt holds the response
// head and the connection or stream its body comes from.
func (a *attempt) send(e *exchange, cl *cluster.Cluster, host *lb.Host, deadline time.Time) (outcome, int) {
	a.cl, a.host, a.failure = cl, host, ""
	if cl.HTTP2 {
		return a.sendH2(e, deadline)
	}
	return a.sendH1(e, deadline)
}

// connError classifies a failure to get a connection.
func (a *attempt) connError(err error) (outcome, int) {
	switch {
	case errors.Is(err, cluster.ErrPendingOverflow):
		return overflowed, 0
	case errors.Is(err, cluster.ErrPendingTimeout):
		return timedOut, 0
	}
	var te *pool.TLSError
	if errors.As(err, &te) {
		a.failure = "TLS_error:" + te.Err.Error()
	}
	return connectFailed, 0
}

// abandon drops a response that is being retried: a small HTTP/1.1 body
// is drained so that the connection can be reused.
func (a *attempt) abandon() {
	if a.h2resp != nil {
		a.discard()
		return
	}
	if a.conn != nil {
		a.finish(a.body.Discard(maxReplayBody), true)
	}
}

// finish gives the connection up after the response: back to the host
// when the exchange ended cleanly (ok: the whole response was read;
// requestDone: the whole request was sent) and the connection may serve
// another request, closed otherwise.
func (a *attempt) finish(ok, requestDone bool) {
	if a.h2resp != nil {
		a.discard()
		return
	}
	if a.conn == nil {
		return
	}
	maxed := a.cl.MaxRequestsPerConnection > 0 && a.conn.Requests >= int(a.cl.MaxRequestsPerConnection)
	if ok && requestDone && !maxed && a.body.Done() && !a.resp.Close && !a.body.UntilEOF() {
		a.cl.Release(a.host, a.conn)
	} else {
		a.conn.Close()
	}
	a.conn = nil
}

// discard closes the connection (or ends the stream) whatever its state.
func (a *attempt) discard() {
	if a.h2resp != nil {
		a.h2resp.Body.Close()
		a.h2resp = nil
	}
	if a.h2cancel != nil {
		a.h2cancel()
		a.h2cancel = nil
	}
	if a.conn != nil {
		a.conn.Close()
		a.conn = nil
	}
}

// grpcStatus returns the grpc-status of the response head, or -1.
func (a *attempt) grpcStatus() int {
	if a.h2resp != nil {
		if s := a.h2resp.Header.Get("grpc-status"); s != "" {
			return atoiOr(s, -1)
		}
		return -1
	}
	v, ok := a.resp.Headers.Get("grpc-status")
	if !ok {
		return -1
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	if len(v) == 0 {
		return -1
	}
	return n
}
