// Package remotesecret makes the Secret that lets one cluster's trellisd
// read another cluster (Istio's remote secret): `trellis
// create-remote-secret` runs it against the cluster to be read and prints
// the Secret, which is applied in the reading cluster's system namespace.
// There registry/kube.Clusters finds it by its istio/multiCluster=true
// label and joins the cluster its kubeconfig names.
//
// It sits at the Kubernetes edge, beside install: it creates the reader
// service account, its ClusterRole and binding (install.ReaderRBAC) and a
// token for it, and builds the kubeconfig around that token.
package remotesecret
