package server

import (
	"context"
	"hash/fnv"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"
)

// Responses are shared between streams: thousands of proxies that get the
// same change get the same bytes. A response's nonce is derived from its
// content (type, version, resources and removals), so equal responses are
// byte-identical and are marshalled once (grpc.PreparedMsg) and then only
// written to each stream. A nonce still names one response on a stream; two
// responses with the same nonce on one stream have the same content.
//
// A prepared message carries the compression of the stream that encoded it,
// so streams whose client compresses (and gets compressed responses) don't
// share: ServerOptions tells the server which streams those are.

// preparedCache holds encoded responses of the latest two versions.
type preparedCache struct {
	mu         sync.Mutex
	curVersion string
	cur, old   map[string]*preparedEntry
}

type preparedEntry struct {
	once sync.Once
	msg  *grpc.PreparedMsg
	err  error
}

// maxPrepared bounds the entries kept per version.
const maxPrepared = 4096

// get returns the entry for key, creating it unless the cache is full (nil
// then: the caller encodes without sharing).
func (p *preparedCache) get(version, key string) *preparedEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	if version != p.curVersion {
		if e := p.old[key]; e != nil {
			return e
		}
		p.old, p.cur, p.curVersion = p.cur, map[string]*preparedEntry{}, version
	}
	if e := p.cur[key]; e != nil {
		return e
	}
	if e := p.old[key]; e != nil {
		return e
	}
	if len(p.cur) >= maxPrepared {
		return nil
	}
	e := &preparedEntry{}
	p.cur[key] = e
	return e
}

// send writes msg on stream through the cache under key.
func (p *preparedCache) send(stream grpc.ServerStream, version, key string, build func() proto.Message) error {
	if compressed(stream.Context()) {
		return stream.SendMsg(build())
	}
	e := p.get(version, key)
	if e == nil {
		return stream.SendMsg(build())
	}
	e.once.Do(func() {
		m := &grpc.PreparedMsg{}
		if err := m.Encode(stream, build()); err != nil {
			e.err = err
			return
		}
		e.msg = m
	})
	if e.err != nil {
		return stream.SendMsg(build())
	}
	return stream.SendMsg(e.msg)
}

// contentNonce names a response by its content.
func contentNonce(typeURL, version string, rs []*Resource, removed []string) string {
	h := fnv.New64a()
	h.Write([]byte(typeURL))
	h.Write([]byte{0})
	h.Write([]byte(version))
	for _, r := range rs {
		h.Write([]byte{1})
		h.Write([]byte(r.Name))
		h.Write([]byte{0})
		h.Write([]byte(r.Version))
	}
	for _, n := range removed {
		h.Write([]byte{2})
		h.Write([]byte(n))
	}
	return version + "-" + strconv.FormatUint(h.Sum64(), 36)
}

// ServerOptions returns the options the grpc.Server that serves a Server
// should be created with: a stats handler that marks streams whose requests
// are compressed, which then get their own responses instead of shared
// ones. Without it every stream is assumed uncompressed (true of Envoy and
// grpc-go's xDS client).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StatsHandler(compressionTagger{})}
}

type compressedKey struct{}

// compressionTagger records, per stream, whether its requests are
// compressed (gRPC then compresses the responses the same way).
type compressionTagger struct{}

func (compressionTagger) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, compressedKey{}, new(atomic.Bool))
}

func (compressionTagger) HandleRPC(ctx context.Context, st stats.RPCStats) {
	if h, ok := st.(*stats.InHeader); ok && h.Compression != "" && h.Compression != encoding.Identity {
		if f, ok := ctx.Value(compressedKey{}).(*atomic.Bool); ok {
			f.Store(true)
		}
	}
}

func (compressionTagger) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (compressionTagger) HandleConn(context.Context, stats.ConnStats) {}

// compressed reports whether a stream's responses are compressed.
func compressed(ctx context.Context) bool {
	f, ok := ctx.Value(compressedKey{}).(*atomic.Bool)
	return ok && f.Load()
}
