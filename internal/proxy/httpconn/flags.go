package httpconn

import "github.com/trellis-mesh/trellis/internal/proxy/respflag"

// Flags are Envoy's response flags (see package respflag).
type Flags = respflag.Flags

// The response flags the connection manager sets, by their short codes.
const (
	FlagUH   = respflag.UH
	FlagUT   = respflag.UT
	FlagUR   = respflag.UR
	FlagUF   = respflag.UF
	FlagUC   = respflag.UC
	FlagUO   = respflag.UO
	FlagNR   = respflag.NR
	FlagDI   = respflag.DI
	FlagFI   = respflag.FI
	FlagDC   = respflag.DC
	FlagURX  = respflag.URX
	FlagSI   = respflag.SI
	FlagDPE  = respflag.DPE
	FlagNC   = respflag.NC
	FlagRBAC = respflag.RBAC
)
