package dashboard

import (
	"math"
	"sort"
	"strconv"
)

// Key is what one Istio metric series says about a kind of call: who called
// which service and workload, which side's proxy saw it, and how it ended.
type Key struct {
	Reporter             string // "source" or "destination"
	SourceWorkload       string
	SourceNamespace      string
	SourceApp            string
	SourceVersion        string
	DestinationWorkload  string
	DestinationNamespace string
	DestinationApp       string
	DestinationVersion   string
	DestinationService   string // hostname
	Protocol             string // request_protocol
	Security             string // connection_security_policy
	Code                 string // response_code
	Flags                string // response_flags
}

// keyLabels are the Istio labels a Key keeps, in the order of labelPtrs.
var keyLabels = []string{
	"reporter",
	"source_workload", "source_workload_namespace", "source_app", "source_version",
	"destination_workload", "destination_workload_namespace", "destination_app", "destination_version",
	"destination_service", "request_protocol", "connection_security_policy",
	"response_code", "response_flags",
}

func (k *Key) labelPtrs() []*string {
	return []*string{
		&k.Reporter,
		&k.SourceWorkload, &k.SourceNamespace, &k.SourceApp, &k.SourceVersion,
		&k.DestinationWorkload, &k.DestinationNamespace, &k.DestinationApp, &k.DestinationVersion,
		&k.DestinationService, &k.Protocol, &k.Security,
		&k.Code, &k.Flags,
	}
}

// keyFrom builds a Key from a label lookup.
func keyFrom(get func(name string) string) Key {
	var k Key
	for i, p := range k.labelPtrs() {
		*p = get(keyLabels[i])
	}
	return k
}

// ServerError reports whether the call ended with a 5xx (Istio's and
// Kiali's error rate).
func (k Key) ServerError() bool {
	c, err := strconv.Atoi(k.Code)
	return err == nil && c >= 500 && c <= 599
}

// Bucket is one cumulative histogram bucket: Count observations were at
// most Le (a count, or a rate once divided by the window).
type Bucket struct {
	Le    float64 `json:"le"`
	Count float64 `json:"count"`
}

// Series is the traffic of one Key over the window.
type Series struct {
	Key
	// Requests is how many calls ended in the window; Rate is per second.
	Requests float64
	Rate     float64
	// Duration holds istio_request_duration_milliseconds buckets as rates,
	// sorted by Le, the last one +Inf.
	Duration []Bucket
}

// Quantile estimates the q-quantile (0..1) of a cumulative histogram the
// way Prometheus' histogram_quantile does: linear interpolation inside the
// bucket the rank falls in, the lower bound of the first bucket being 0,
// and the highest finite bound when the rank falls in +Inf. It returns NaN
// when the histogram is empty.
func Quantile(q float64, buckets []Bucket) float64 {
	if len(buckets) == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	bs := append([]Bucket(nil), buckets...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].Le < bs[j].Le })
	if !math.IsInf(bs[len(bs)-1].Le, 1) {
		return math.NaN() // Prometheus wants the +Inf bucket too
	}
	// Counts are cumulative; a smaller count after a larger one (a scrape
	// racing the histogram's updates) is treated as equal.
	for i := 1; i < len(bs); i++ {
		if bs[i].Count < bs[i-1].Count {
			bs[i].Count = bs[i-1].Count
		}
	}
	total := bs[len(bs)-1].Count
	if total <= 0 {
		return math.NaN()
	}
	if q <= 0 {
		return 0
	}
	if q >= 1 {
		q = 1
	}
	rank := q * total
	i := sort.Search(len(bs), func(i int) bool { return bs[i].Count >= rank })
	if i == len(bs)-1 && len(bs) > 1 {
		return bs[len(bs)-2].Le
	}
	lower, below := 0.0, 0.0
	if i > 0 {
		lower, below = bs[i-1].Le, bs[i-1].Count
	} else if bs[0].Le <= 0 {
		return bs[0].Le
	}
	inBucket := bs[i].Count - below
	if inBucket <= 0 {
		return bs[i].Le
	}
	return lower + (bs[i].Le-lower)*(rank-below)/inBucket
}

// addBuckets adds b's counts into a, bucket by bucket (matched by Le); a's
// missing bounds are added.
func addBuckets(a, b []Bucket) []Bucket {
	for _, x := range b {
		found := false
		for i := range a {
			if a[i].Le == x.Le {
				a[i].Count += x.Count
				found = true
				break
			}
		}
		if !found {
			a = append(a, x)
		}
	}
	sort.Slice(a, func(i, j int) bool { return a[i].Le < a[j].Le })
	return a
}
