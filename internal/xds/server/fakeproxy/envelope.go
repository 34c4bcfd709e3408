package fakeproxy

import (
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// DecodeMode says how much of each response a client decodes.
type DecodeMode int

const (
	// DecodeFull unmarshals each response and every resource in it into
	// its Envoy type, as a real proxy does before applying config.
	DecodeFull DecodeMode = iota
	// DecodeEnvelope reads what a proxy needs to check and ACK a response
	// (type, system version, nonce, each resource's name and version, the
	// removals) straight from the received bytes, and copies and decodes
	// resource bodies only where the client must read them: clusters and
	// listeners, to follow them to endpoints and routes (and every body
	// with KeepResources). It leaves out the proxy's own cost of decoding
	// route tables and endpoints, so that thousands of clients sharing the
	// control plane's machine in a benchmark spend their CPU on what the
	// control plane causes: receiving, checking and ACKing.
	DecodeEnvelope
)

// Field numbers of the messages the envelope decoder reads, taken from the
// descriptors so they cannot drift from the generated types.
var (
	respSysVersion = fieldNum(&discoveryv3.DeltaDiscoveryResponse{}, "system_version_info")
	respResources  = fieldNum(&discoveryv3.DeltaDiscoveryResponse{}, "resources")
	respTypeURL    = fieldNum(&discoveryv3.DeltaDiscoveryResponse{}, "type_url")
	respNonce      = fieldNum(&discoveryv3.DeltaDiscoveryResponse{}, "nonce")
	respRemoved    = fieldNum(&discoveryv3.DeltaDiscoveryResponse{}, "removed_resources")
	resName        = fieldNum(&discoveryv3.Resource{}, "name")
	resVersion     = fieldNum(&discoveryv3.Resource{}, "version")
	resBody        = fieldNum(&discoveryv3.Resource{}, "resource")
	anyTypeURL     = fieldNum(&anypb.Any{}, "type_url")
	anyValue       = fieldNum(&anypb.Any{}, "value")
)

func fieldNum(m interface{ ProtoReflect() protoreflect.Message }, name string) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
	if f == nil {
		panic(fmt.Sprintf("fakeproxy: %s has no field %s", m.ProtoReflect().Descriptor().FullName(), name))
	}
	return f.Number()
}

// envelopeCodec is the gRPC codec of a DecodeEnvelope stream: requests are
// marshalled as usual, responses are decoded by decodeEnvelope.
type envelopeCodec struct{ keepAll bool }

func (envelopeCodec) Name() string { return "proto" }

func (envelopeCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2("proto").Marshal(v)
}

func (c envelopeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	resp, ok := v.(*discoveryv3.DeltaDiscoveryResponse)
	if !ok {
		return encoding.GetCodecV2("proto").Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return decodeEnvelope(buf.ReadOnlyData(), resp, c.keepAll)
}

// needsBody reports whether a client must read resources of a type to
// follow them.
func needsBody(typeURL string) bool {
	return typeURL == resourcev3.ClusterType || typeURL == resourcev3.ListenerType
}

// decodeEnvelope fills resp from the wire bytes b: every field a client
// checks, and resource bodies (copied out of b) only for types in needsBody
// or when keepAll. Other fields are skipped.
func decodeEnvelope(b []byte, resp *discoveryv3.DeltaDiscoveryResponse, keepAll bool) error {
	resp.Reset()
	// The type decides whether bodies are kept; Go marshals it after the
	// resources, so find it first.
	if err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == respTypeURL && typ == protowire.BytesType {
			resp.TypeUrl = string(v)
		}
		return nil
	}); err != nil {
		return err
	}
	keep := keepAll || needsBody(resp.TypeUrl)
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case respSysVersion:
			resp.SystemVersionInfo = string(v)
		case respNonce:
			resp.Nonce = string(v)
		case respRemoved:
			resp.RemovedResources = append(resp.RemovedResources, string(v))
		case respResources:
			r, err := decodeResource(v, keep)
			if err != nil {
				return err
			}
			resp.Resources = append(resp.Resources, r)
		}
		return nil
	})
}

func decodeResource(b []byte, keep bool) (*discoveryv3.Resource, error) {
	r := &discoveryv3.Resource{}
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case resName:
			r.Name = string(v)
		case resVersion:
			r.Version = string(v)
		case resBody:
			if !keep {
				return nil
			}
			a := &anypb.Any{}
			if err := eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				switch {
				case typ != protowire.BytesType:
				case num == anyTypeURL:
					a.TypeUrl = string(v)
				case num == anyValue:
					a.Value = append([]byte(nil), v...)
				}
				return nil
			}); err != nil {
				return fmt.Errorf("resource %q body: %w", r.Name, err)
			}
			r.Resource = a
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("resource: %w", err)
	}
	return r, nil
}

// eachField calls fn with every field of the message b; v is the payload
// of length-delimited fields and nil otherwise.
func eachField(b []byte, fn func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("malformed field tag: %w", protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		if typ == protowire.BytesType {
			v, n = protowire.ConsumeBytes(b)
		} else {
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return fmt.Errorf("malformed field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}
