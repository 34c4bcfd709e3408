package config

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// The schema check walks the decoded JSON of a spec against the istio.io/api
// message descriptor before protojson decodes it, so that every unknown
// field and wrong type is reported with its field path (protojson stops at
// the first problem and names no path).

type fieldProblem struct {
	path Path
	msg  string
}

func report(out *[]fieldProblem, p Path, format string, args ...any) {
	*out = append(*out, fieldProblem{path: p, msg: fmt.Sprintf(format, args...)})
}

func checkMessage(p Path, v any, md protoreflect.MessageDescriptor, out *[]fieldProblem) {
	if v == nil {
		return
	}
	if wellKnown(p, v, md, out) {
		return
	}
	obj, ok := v.(map[string]any)
	if !ok {
		report(out, p, "got %s, want an object", jsonType(v))
		return
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	seen := map[protoreflect.FieldNumber]string{}
	oneofs := map[protoreflect.FullName]string{}
	for _, k := range keys {
		fd := md.Fields().ByJSONName(k)
		if fd == nil {
			fd = md.Fields().ByTextName(k)
		}
		if fd == nil {
			report(out, p.Field(k), "unknown field; %s accepts %s", md.Name(), fieldList(md))
			continue
		}
		if prev, dup := seen[fd.Number()]; dup {
			report(out, p.Field(k), "duplicate of %s (the same field in another spelling)", prev)
			continue
		}
		seen[fd.Number()] = k
		val := obj[k]
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && val != nil {
			if prev, set := oneofs[od.FullName()]; set {
				report(out, p.Field(k), "cannot be set together with %s; choose one", prev)
				continue
			}
			oneofs[od.FullName()] = k
		}
		checkField(p.Field(k), val, fd, out)
	}
}

func fieldList(md protoreflect.MessageDescriptor) string {
	fs := md.Fields()
	names := make([]string, 0, fs.Len())
	for i := 0; i < fs.Len(); i++ {
		names = append(names, fs.Get(i).JSONName())
	}
	return strings.Join(names, ", ")
}

func checkField(p Path, v any, fd protoreflect.FieldDescriptor, out *[]fieldProblem) {
	if v == nil {
		return
	}
	switch {
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			report(out, p, "got %s, want a map", jsonType(v))
			return
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			checkKey(p.Key(k), k, fd.MapKey(), out)
			checkSingle(p.Key(k), obj[k], fd.MapValue(), out)
		}
	case fd.IsList():
		list, ok := v.([]any)
		if !ok {
			report(out, p, "got %s, want a list", jsonType(v))
			return
		}
		for i, x := range list {
			checkSingle(p.Index(i), x, fd, out)
		}
	default:
		checkSingle(p, v, fd, out)
	}
}

func checkKey(p Path, k string, fd protoreflect.FieldDescriptor, out *[]fieldProblem) {
	switch fd.Kind() {
	case protoreflect.StringKind:
	case protoreflect.BoolKind:
		if k != "true" && k != "false" {
			report(out, p, "map key %q is not a bool", k)
		}
	default:
		if _, err := strconv.ParseInt(k, 10, 64); err != nil {
			report(out, p, "map key %q is not an integer", k)
		}
	}
}

func checkSingle(p Path, v any, fd protoreflect.FieldDescriptor, out *[]fieldProblem) {
	if v == nil {
		return
	}
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		checkMessage(p, v, fd.Message(), out)
	case protoreflect.EnumKind:
		checkEnum(p, v, fd.Enum(), out)
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			report(out, p, "got %s, want true or false", jsonType(v))
		}
	case protoreflect.StringKind:
		if _, ok := v.(string); !ok {
			report(out, p, "got %s, want a string (quote it)", jsonType(v))
		}
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok {
			report(out, p, "got %s, want base64 text", jsonType(v))
		} else if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			if _, err := base64.URLEncoding.DecodeString(s); err != nil {
				report(out, p, "not valid base64")
			}
		}
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		checkFloat(p, v, out)
	default:
		checkInt(p, v, fd.Kind(), out)
	}
}

func checkEnum(p Path, v any, ed protoreflect.EnumDescriptor, out *[]fieldProblem) {
	switch x := v.(type) {
	case string:
		if ed.Values().ByName(protoreflect.Name(x)) == nil {
			report(out, p, "%q is not allowed; want one of %s", x, enumList(ed))
		}
	case json.Number:
		n, err := x.Int64()
		if err != nil || ed.Values().ByNumber(protoreflect.EnumNumber(n)) == nil {
			report(out, p, "%s is not allowed; want one of %s", x, enumList(ed))
		}
	default:
		report(out, p, "got %s, want one of %s", jsonType(v), enumList(ed))
	}
}

func enumList(ed protoreflect.EnumDescriptor) string {
	vs := ed.Values()
	names := make([]string, 0, vs.Len())
	for i := 0; i < vs.Len(); i++ {
		names = append(names, string(vs.Get(i).Name()))
	}
	return strings.Join(names, ", ")
}

func numberText(p Path, v any, out *[]fieldProblem, want string) (string, bool) {
	switch x := v.(type) {
	case json.Number:
		return x.String(), true
	case string:
		return strings.TrimSpace(x), true
	default:
		report(out, p, "got %s, want %s", jsonType(v), want)
		return "", false
	}
}

func checkInt(p Path, v any, kind protoreflect.Kind, out *[]fieldProblem) {
	var min, max float64
	want := "an integer"
	switch kind {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		min, max = math.MinInt32, math.MaxInt32
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		min, max, want = 0, math.MaxUint32, "a non-negative integer"
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		min, max, want = 0, math.MaxUint64, "a non-negative integer"
	default:
		min, max = math.MinInt64, math.MaxInt64
	}
	s, ok := numberText(p, v, out, want)
	if !ok {
		return
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != math.Trunc(f) || math.IsInf(f, 0) {
		report(out, p, "%q is not %s", s, want)
		return
	}
	if f < min || f > max {
		report(out, p, "%s is out of range; want %s up to %.0f", s, want, max)
	}
}

func checkFloat(p Path, v any, out *[]fieldProblem) {
	s, ok := numberText(p, v, out, "a number")
	if !ok {
		return
	}
	switch s {
	case "NaN", "Infinity", "-Infinity":
		return
	}
	if _, err := strconv.ParseFloat(s, 64); err != nil {
		report(out, p, "%q is not a number", s)
	}
}

// wellKnown checks the google.protobuf types that have a special JSON form.
// It reports whether md was one of them.
func wellKnown(p Path, v any, md protoreflect.MessageDescriptor, out *[]fieldProblem) bool {
	switch md.FullName() {
	case "google.protobuf.Duration":
		s, ok := v.(string)
		if !ok {
			report(out, p, "got %s, want a duration such as \"5s\", \"0.5s\" or \"500ms\"", jsonType(v))
		} else if _, err := time.ParseDuration(s); err != nil {
			report(out, p, "%q is not a duration; write a number with a unit, such as \"5s\", \"0.5s\" or \"500ms\"", s)
		}
	case "google.protobuf.Timestamp", "google.protobuf.FieldMask":
		if _, ok := v.(string); !ok {
			report(out, p, "got %s, want a string", jsonType(v))
		}
	case "google.protobuf.BoolValue":
		if _, ok := v.(bool); !ok {
			report(out, p, "got %s, want true or false", jsonType(v))
		}
	case "google.protobuf.StringValue", "google.protobuf.BytesValue":
		if _, ok := v.(string); !ok {
			report(out, p, "got %s, want a string", jsonType(v))
		}
	case "google.protobuf.Int32Value":
		checkInt(p, v, protoreflect.Int32Kind, out)
	case "google.protobuf.UInt32Value":
		checkInt(p, v, protoreflect.Uint32Kind, out)
	case "google.protobuf.Int64Value":
		checkInt(p, v, protoreflect.Int64Kind, out)
	case "google.protobuf.UInt64Value":
		checkInt(p, v, protoreflect.Uint64Kind, out)
	case "google.protobuf.DoubleValue", "google.protobuf.FloatValue":
		checkFloat(p, v, out)
	case "google.protobuf.Struct", "google.protobuf.Any", "google.protobuf.Empty":
		if _, ok := v.(map[string]any); !ok {
			report(out, p, "got %s, want an object", jsonType(v))
		}
	case "google.protobuf.ListValue":
		if _, ok := v.([]any); !ok {
			report(out, p, "got %s, want a list", jsonType(v))
		}
	case "google.protobuf.Value":
	default:
		return false
	}
	return true
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return fmt.Sprintf("a bool (%v)", x)
	case json.Number:
		return fmt.Sprintf("a number (%s)", x)
	case float64:
		return fmt.Sprintf("a number (%v)", x)
	case string:
		if len(x) > 40 {
			x = x[:40] + "..."
		}
		return fmt.Sprintf("a string (%q)", x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
