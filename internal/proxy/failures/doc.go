// Package failures keeps a proxy's last failed requests and connections:
// a small bounded ring of the non-2xx and proxy-made responses (and the
// TCP connections with response flags) with their status, flags,
// response code details, route and upstream cluster. The proxy's request
// observer offers it every finished request; a successful one is
// rejected by one comparison and costs nothing. The admin API serves the
// ring as JSON at /debug/failures, which `trellis explain` reads.
package failures
