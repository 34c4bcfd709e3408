// Package accesslog writes Envoy-style access logs: the text format with
// %COMMAND% operators (Istio's default format when none is given) and the
// JSON format, to stdout or a file, as configured by
// envoy.access_loggers.file (or stdout) entries of an HTTP connection
// manager or TCP proxy.
//
// It sits at the end of a request: the format is compiled once with the
// listener, the data path fills an Entry and calls Log.Write, which renders
// the line and hands it to a single writer goroutine per file through a
// bounded channel; when the channel is full the line is dropped and counted,
// so a slow disk never stalls requests.
package accesslog
