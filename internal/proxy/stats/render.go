package stats

import (
	"bufio"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// WriteText writes every stat in Envoy's /stats text format: one
// "name: value" line per counter and gauge, sorted by name, and for
// histograms Envoy's quantile summary line.
func (s *Store) WriteText(w io.Writer, filter func(name string) bool) error {
	bw := bufio.NewWriter(w)
	for _, st := range s.Each() {
		if filter != nil && !filter(st.Name) {
			continue
		}
		bw.WriteString(st.Name)
		bw.WriteString(": ")
		switch st.Kind {
		case KindCounter:
			bw.WriteString(strconv.FormatUint(st.Counter.Value(), 10))
		case KindGauge:
			bw.WriteString(strconv.FormatInt(st.Gauge.Value(), 10))
		case KindHistogram:
			writeQuantiles(bw, st.Histogram.Snapshot())
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

var quantiles = []float64{0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1}

func writeQuantiles(bw *bufio.Writer, h HistogramSnapshot) {
	if h.Count == 0 {
		bw.WriteString("No recorded values")
		return
	}
	for i, q := range quantiles {
		if i > 0 {
			bw.WriteByte(' ')
		}
		bw.WriteString("P")
		bw.WriteString(strconv.FormatFloat(q*100, 'f', -1, 64))
		bw.WriteString("(nan,")
		bw.WriteString(strconv.FormatFloat(h.Quantile(q), 'g', 6, 64))
		bw.WriteString(")")
	}
}

// Quantile estimates the q-quantile (0..1) by linear interpolation inside
// the bucket that holds it, as Prometheus' histogram_quantile does.
func (h HistogramSnapshot) Quantile(q float64) float64 {
	if h.Count == 0 {
		return math.NaN()
	}
	rank := q * float64(h.Count)
	var prevBound float64
	var prevCount uint64
	for i, c := range h.Cumulative {
		if float64(c) >= rank && c > 0 {
			inBucket := float64(c - prevCount)
			if inBucket == 0 {
				return h.Bounds[i]
			}
			return prevBound + (h.Bounds[i]-prevBound)*(rank-float64(prevCount))/inBucket
		}
		prevBound, prevCount = h.Bounds[i], c
	}
	if len(h.Bounds) > 0 {
		return h.Bounds[len(h.Bounds)-1]
	}
	return math.NaN()
}

// PromName turns an Envoy stat into its Prometheus metric name:
// "envoy_" + scope kind + "_" + suffix, every character outside
// [a-zA-Z0-9_:] replaced by '_'.
func PromName(st *Stat) string {
	var b strings.Builder
	b.WriteString("envoy_")
	if st.TagName != "" {
		b.WriteString(st.Scope)
		b.WriteByte('_')
		b.WriteString(st.Suffix)
	} else {
		b.WriteString(st.Name)
	}
	return SanitizeName(b.String())
}

// SanitizeName replaces characters Prometheus does not allow in a metric
// name with '_'.
func SanitizeName(s string) string {
	out := []byte(s)
	for i, c := range out {
		ok := c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			out[i] = '_'
		}
	}
	return string(out)
}

// EscapeLabel escapes a label value for the Prometheus text format.
func EscapeLabel(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return r.Replace(s)
}

// WritePrometheus writes every stat in the Prometheus text exposition
// format (version 0.0.4), grouped by metric name with one TYPE line each.
func (s *Store) WritePrometheus(w io.Writer) error {
	type row struct {
		metric string
		st     *Stat
	}
	all := s.all()
	rows := make([]row, 0, len(all))
	for _, st := range all {
		rows = append(rows, row{st.promName, st})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].metric != rows[j].metric {
			return rows[i].metric < rows[j].metric
		}
		return rows[i].st.promLabels < rows[j].st.promLabels
	})
	bw := bufio.NewWriterSize(w, 64<<10)
	var num [24]byte
	var last string
	var lastKind Kind
	for _, r := range rows {
		if r.metric == last && r.st.Kind != lastKind {
			continue // same name, different kind: Prometheus cannot hold both
		}
		if r.metric != last {
			last, lastKind = r.metric, r.st.Kind
			bw.WriteString("# TYPE ")
			bw.WriteString(r.metric)
			switch r.st.Kind {
			case KindCounter:
				bw.WriteString(" counter\n")
			case KindGauge:
				bw.WriteString(" gauge\n")
			case KindHistogram:
				bw.WriteString(" histogram\n")
			}
		}
		labels := r.st.promLabels
		switch r.st.Kind {
		case KindCounter:
			writeSampleBytes(bw, r.metric, labels, "")
			bw.Write(strconv.AppendUint(num[:0], r.st.Counter.Value(), 10))
			bw.WriteByte('\n')
		case KindGauge:
			writeSampleBytes(bw, r.metric, labels, "")
			bw.Write(strconv.AppendInt(num[:0], r.st.Gauge.Value(), 10))
			bw.WriteByte('\n')
		case KindHistogram:
			WriteHistogram(bw, r.metric, labels, r.st.Histogram.Snapshot())
		}
	}
	return bw.Flush()
}

func writeSample(bw *bufio.Writer, name, labels, extra, value string) {
	writeSampleBytes(bw, name, labels, extra)
	bw.WriteString(value)
	bw.WriteByte('\n')
}

func writeSampleBytes(bw *bufio.Writer, name, labels, extra string) {
	bw.WriteString(name)
	if labels != "" || extra != "" {
		bw.WriteByte('{')
		bw.WriteString(labels)
		if labels != "" && extra != "" {
			bw.WriteByte(',')
		}
		bw.WriteString(extra)
		bw.WriteByte('}')
	}
	bw.WriteByte(' ')
}

// WriteHistogram writes one histogram's _bucket, _sum and _count samples
// in Prometheus text format; labels is the rendered label list without
// braces (may be empty).
func WriteHistogram(bw *bufio.Writer, name, labels string, h HistogramSnapshot) {
	for i, b := range h.Bounds {
		writeSample(bw, name+"_bucket", labels, `le="`+strconv.FormatFloat(b, 'f', -1, 64)+`"`, strconv.FormatUint(h.Cumulative[i], 10))
	}
	writeSample(bw, name+"_bucket", labels, `le="+Inf"`, strconv.FormatUint(h.Count, 10))
	writeSample(bw, name+"_sum", labels, "", strconv.FormatFloat(h.Sum, 'g', -1, 64))
	writeSample(bw, name+"_count", labels, "", strconv.FormatUint(h.Count, 10))
}
