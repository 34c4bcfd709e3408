package xdsclient

import (
	"testing"

	"google.golang.org/protobuf/types/known/anypb"
)

// FuzzDecode feeds arbitrary bytes as each resource type: naming and
// subscription derivation must fail cleanly, never panic.
func FuzzDecode(f *testing.F) {
	c, _ := anypb.New(edsCluster("a"))
	f.Add(0, c.GetValue())
	f.Add(2, []byte{0x0a, 0x01, 'x'})
	f.Fuzz(func(t *testing.T, typ int, data []byte) {
		if typ < 0 {
			typ = -typ
		}
		a := &anypb.Any{TypeUrl: Types[typ%len(Types)], Value: data}
		name, err := ResourceName(a)
		if err != nil {
			return
		}
		set := map[string]*Resource{name: {Name: name, Resource: a}}
		edsNames(set)
		rdsNames(set)
		sdsNames(set, set)
	})
}
