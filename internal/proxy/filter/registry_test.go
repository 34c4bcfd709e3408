package filter

import (
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestContractListsRegistry keeps docs/xds-contract.md's HTTP filters
// table in step with the registry: each entry has a row naming the filter
// and its config types.
func TestContractListsRegistry(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/xds-contract.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "| `envoy.filters.http.") {
			name := strings.Trim(strings.Split(l, "|")[1], " `")
			rows[name] = l
		}
	}
	for _, b := range builders {
		row, ok := rows[b.Name]
		if !ok {
			t.Errorf("docs/xds-contract.md has no HTTP filters row for %s", b.Name)
			continue
		}
		cells := strings.Split(row, "|")
		if got := strings.Trim(cells[2], " `"); got != typeURL(b.config) {
			t.Errorf("%s: the contract lists typed_config %s, want %s", b.Name, got, typeURL(b.config))
		}
		want := "none"
		if b.routeType != nil {
			want = typeURL(b.routeType)
		}
		if got := strings.Trim(cells[3], " `"); got != want {
			t.Errorf("%s: the contract lists per-route config %s, want %s", b.Name, got, want)
		}
		delete(rows, b.Name)
	}
	for name := range rows {
		t.Errorf("docs/xds-contract.md lists %s, which the registry lacks", name)
	}
}

func typeURL(t protoreflect.MessageType) string {
	return "type.googleapis.com/" + string(t.Descriptor().FullName())
}
