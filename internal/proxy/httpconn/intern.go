package httpconn

import (
	"net/http"
	"strings"
	"unsafe"
)

// commonHeaders are header names seen on most requests and responses,
// interned so that converting them between the HTTP/2 library's
// http.Header maps and the data path's byte slices does not allocate.
var commonHeaders = []string{
	"accept", "accept-encoding", "authorization", "cache-control", "content-encoding",
	"content-length", "content-type", "cookie", "date", "etag", "grpc-accept-encoding",
	"grpc-encoding", "grpc-message", "grpc-status", "grpc-timeout", "location", "server",
	"set-cookie", "te", "trailer", "user-agent", "vary", "x-envoy-attempt-count",
	"x-envoy-expected-rq-timeout-ms", "x-envoy-original-path", "x-envoy-peer-metadata",
	"x-envoy-peer-metadata-id", "x-envoy-upstream-service-time", "x-forwarded-for",
	"x-forwarded-proto", "x-request-id", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled",
	"traceparent", "tracestate",
}

var (
	// lowerOf maps canonical and lower-case spellings to the lower-case
	// name as bytes; canonicalOf maps lower-case to net/http's canonical
	// key.
	lowerOf     = map[string][]byte{}
	lowerString = map[string]string{}
	canonicalOf = map[string]string{}
)

func init() {
	for _, h := range commonHeaders {
		b := []byte(h)
		c := http.CanonicalHeaderKey(h)
		lowerOf[h], lowerOf[c] = b, b
		lowerString[h] = h
		canonicalOf[h] = c
	}
}

// lowerName returns the lower-case form of an http.Header key as bytes,
// without allocating for common names.
func lowerName(k string) []byte {
	if b, ok := lowerOf[k]; ok {
		return b
	}
	return []byte(strings.ToLower(k))
}

// keyString returns a lower-case header name from the data path as a
// string key, without allocating for common names.
func keyString(b []byte) string {
	if s, ok := lowerString[string(b)]; ok {
		return s
	}
	return string(b)
}

// canonicalKey returns net/http's canonical key for a lower-case name.
func canonicalKey(b []byte) string {
	if s, ok := canonicalOf[string(b)]; ok {
		return s
	}
	return http.CanonicalHeaderKey(string(b))
}

// stringBytes views an immutable string as bytes (read only).
func stringBytes(s string) []byte {
	if s == "" {
		return nil
	}
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
