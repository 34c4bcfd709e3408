package failures

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestRingKeepsTheLastNewestFirst(t *testing.T) {
	tests := []struct {
		name  string
		size  int
		adds  int
		want  []int
		total uint64
	}{
		{"empty", 3, 0, []int{}, 0},
		{"partly filled", 3, 2, []int{1, 0}, 2},
		{"full", 3, 3, []int{2, 1, 0}, 3},
		{"wrapped", 3, 7, []int{6, 5, 4}, 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(tt.size)
			for i := 0; i < tt.adds; i++ {
				r.Add(Failure{Status: i})
			}
			s := r.Snapshot()
			got := []int{}
			for _, f := range s.Failures {
				got = append(got, f.Status)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
			if s.Total != tt.total || s.Capacity != tt.size {
				t.Errorf("got total %d capacity %d, want %d %d", s.Total, s.Capacity, tt.total, tt.size)
			}
		})
	}
}

func TestRingClipsLongFieldsAndWritesJSON(t *testing.T) {
	r := New(0)
	r.Add(Failure{Path: "/" + strings.Repeat("a", 1000), Details: "no_healthy_upstream;cluster=x"})
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var s Snapshot
	if err := json.Unmarshal(buf.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Capacity != Size || len(s.Failures) != 1 || len(s.Failures[0].Path) != maxField || s.Failures[0].Details != "no_healthy_upstream;cluster=x" {
		t.Errorf("got %+v", s)
	}
}
