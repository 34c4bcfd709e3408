package httpconn

import "bytes"

// normalizePath returns p (the request target's path and query) with, if
// dots, dot segments removed and, if merge, repeated slashes collapsed;
// the query is kept as is. It returns p itself when nothing changes, else
// appends to dst.
func normalizePath(dst, p []byte, dots, merge bool) []byte {
	path, query := p, []byte(nil)
	if i := bytes.IndexByte(p, '?'); i >= 0 {
		path, query = p[:i], p[i:]
	}
	if !needsNormalizing(path, dots, merge) {
		return p
	}
	out := dst[:0]
	// Walk segments; out always starts with "/".
	out = append(out, '/')
	segStart := 0
	if len(path) > 0 && path[0] == '/' {
		segStart = 1
	}
	for segStart <= len(path) {
		end := bytes.IndexByte(path[segStart:], '/')
		last := end < 0
		if last {
			end = len(path)
		} else {
			end += segStart
		}
		seg := path[segStart:end]
		switch {
		case dots && string(seg) == ".":
			// dropped; a trailing "." leaves the trailing slash
		case dots && string(seg) == "..":
			// drop the last segment of out
			if len(out) > 1 {
				j := bytes.LastIndexByte(out[:len(out)-1], '/')
				out = out[:j+1]
			}
		case len(seg) == 0 && merge && !last:
			// collapse "//"
		default:
			out = append(out, seg...)
			if !last {
				out = append(out, '/')
			}
		}
		if last {
			break
		}
		segStart = end + 1
	}
	return append(out, query...)
}

// needsNormalizing reports whether path has a "." or ".." segment or, with
// merge, a "//".
func needsNormalizing(path []byte, dots, merge bool) bool {
	if merge && bytes.Contains(path, []byte("//")) {
		return true
	}
	if !dots {
		return false
	}
	for i := 0; i < len(path); i++ {
		if path[i] != '.' || (i > 0 && path[i-1] != '/') {
			continue
		}
		j := i + 1
		if j < len(path) && path[j] == '.' {
			j++
		}
		if j == len(path) || path[j] == '/' {
			return true
		}
	}
	return false
}
