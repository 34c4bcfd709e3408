package file

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/trellis-mesh/trellis/internal/config"
)

// BenchmarkEditToStore measures the time from rewriting a file to the new
// snapshot reaching a store subscriber (debounce included): the "takes
// effect within a second" promise of --config-dir.
func BenchmarkEditToStore(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "vs.yaml")
	if err := os.WriteFile(path, []byte(vsYAML("vs", 0)), 0o644); err != nil {
		b.Fatal(err)
	}
	store := config.NewStore()
	got := make(chan *config.Snapshot, 16)
	store.Subscribe(func(s *config.Snapshot) { got <- s })
	w := New(dir, store, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	<-w.Synced()
	time.Sleep(100 * time.Millisecond) // let the watch settle
	for len(got) > 0 {
		<-got
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := os.WriteFile(path, []byte(vsYAML("vs", 1+i%99)), 0o644); err != nil {
			b.Fatal(err)
		}
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			b.Fatal("edit never reached the store")
		}
	}
}
