// Package healthcheck runs Envoy-style active health checks against a
// cluster's hosts: HTTP (GET path, expected status ranges, default 200) and
// TCP (connect, optionally send a payload and expect bytes back), each with
// an interval, a timeout and unhealthy/healthy thresholds.
//
// It sits beside the cluster package: a cluster with health_checks owns one
// Checker, which flips Host.SetHealthCheckFailed and calls the cluster back
// so that its balancer stops (or resumes) picking the host.
package healthcheck
