// Package webhook is trellisd's admission endpoint: an HTTPS server (port
// 15017) answering the API server's AdmissionReviews on /inject (sidecar
// injection through the inject package, returned as a JSON patch) and
// /validate (Istio objects checked by config/validate, refused with the
// same field-path errors as local mode). It also makes the self-signed CA
// and serving certificate the webhook configurations trust.
package webhook
