package kube

import "strconv"

func strconvU(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
