// Package demoapp provides the small HTTP workloads `trellis demo` and the
// local-mode tests run inside the mesh (in place of the seeds' nginx,
// tomcat and flaskapp containers), and the load generator that calls them
// and summarises what answered. It sits at the edges of the flow: an app
// behind its sidecar, and a client in front of one.
package demoapp
