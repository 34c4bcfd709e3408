package server

import (
	"hash/fnv"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Responses are shared between streams: thousands of proxies that get the
// same change get the same bytes. A response's nonce is derived from its
// content (type, version, resources and removals), so equal responses are
// byte-identical and are marshalled once (grpc.PreparedMsg) and then only
// written to each stream. A nonce still names one response on a stream; two
// responses with the same nonce on one stream have the same content.

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
