// Package kubetest starts a real etcd and kube-apiserver for tests (no
// controller-manager, scheduler or kubelet: tests create EndpointSlices and
// set Pod status themselves).
//
// The binaries come from $TRELLIS_KUBEBINS, else the version-keyed cache
// that scripts/kubebins.sh fills (it extracts the prebuilt archive or
// builds both from the Go module proxy once per machine). A test skips with
// the reason only when neither binary can be had.
//
// One API server is shared by the tests of a package:
//
//	func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }
//	func TestX(t *testing.T) { env := kubetest.Shared(t); ... }
package kubetest
