package kubetest

import "syscall"

// dieWithParent kills etcd and kube-apiserver when the test binary dies
// (a timeout or a crash), so no server outlives its test.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
