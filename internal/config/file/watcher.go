package file

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/trellis-mesh/trellis/internal/config"
	"github.com/trellis-mesh/trellis/internal/config/validate"
)

// SourcePrefix starts the store source name of every file: "file:" + path.
const SourcePrefix = "file:"

// Options tune a Watcher.
type Options struct {
	// DefaultNamespace is used for objects without metadata.namespace; the
	// zero value means "default".
	DefaultNamespace string
	// Logf reports loaded files and rejected ones; nil discards.
	Logf func(format string, args ...any)
	// Debounce is how long to gather file events before acting on them;
	// zero means 50ms.
	Debounce time.Duration
}

// Watcher keeps a config.Store in step with a directory of YAML/JSON files.
// Each file is one store source ("file:" + its path). A file with any parse
// or validation error is reported (Errors) and its last valid content keeps
// serving; deleting a file removes its resources.
type Watcher struct {
	dir   string
	store *config.Store
	opts  Options

	mu       sync.Mutex
	errs     map[string][]validate.Issue   // display path -> errors of the latest read
	warns    map[string][]validate.Issue   // display path -> warnings of the served content
	cross    map[string][]validate.Issue   // display path -> cross-resource warnings (validate.Snapshot)
	unenf    map[string][]validate.Issue   // display path -> served resources not enforced yet
	content  map[string][]byte             // abs path -> last bytes read
	inStore  map[string]bool               // abs path -> has a source in the store
	defines  map[string][]*config.Resource // abs path -> resources it serves
	synced   chan struct{}
	syncOnce sync.Once
}

// New returns a watcher for dir; nothing happens until Load or Run.
func New(dir string, store *config.Store, opts Options) *Watcher {
	if opts.Debounce <= 0 {
		opts.Debounce = 50 * time.Millisecond
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		dir = abs
	}
	return &Watcher{
		dir: dir, store: store, opts: opts,
		errs: map[string][]validate.Issue{}, warns: map[string][]validate.Issue{}, cross: map[string][]validate.Issue{}, unenf: map[string][]validate.Issue{},
		content: map[string][]byte{}, inStore: map[string]bool{}, defines: map[string][]*config.Resource{},
		synced: make(chan struct{}),
	}
}

// Watch loads dir into store and keeps it in step until ctx ends.
func Watch(ctx context.Context, dir string, store *config.Store, logf func(format string, args ...any)) error {
	return New(dir, store, Options{Logf: logf}).Run(ctx)
}

// Synced is closed once the first full load has reached the store.
func (w *Watcher) Synced() <-chan struct{} { return w.synced }

// Errors returns, per file (path relative to the directory), the errors
// that kept its latest content out of the store. Files without errors are
// absent. The map is a copy.
func (w *Watcher) Errors() map[string][]validate.Issue {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string][]validate.Issue, len(w.errs))
	for k, v := range w.errs {
		out[k] = append([]validate.Issue(nil), v...)
	}
	return out
}

// Warnings returns, per file, the warnings about the content being served:
// each resource's own (weights not adding up to 100, ...) and those that
// need the whole directory (a subset no DestinationRule defines, a host no
// Service or ServiceEntry in the directory declares). The map is a copy.
func (w *Watcher) Warnings() map[string][]validate.Issue {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string][]validate.Issue, len(w.warns)+len(w.cross))
	for k, v := range w.warns {
		out[k] = append([]validate.Issue(nil), v...)
	}
	for k, v := range w.cross {
		out[k] = append(out[k], v...)
	}
	return out
}

// NotEnforced returns, per file, the error-level findings about served
// resources whose kind Trellis does not enforce yet (validate.NotEnforced).
// The resources are served; nothing acts on them. The map is a copy.
func (w *Watcher) NotEnforced() map[string][]validate.Issue {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string][]validate.Issue, len(w.unenf))
	for k, v := range w.unenf {
		out[k] = append([]validate.Issue(nil), v...)
	}
	return out
}

// Load reads every config file under the directory once and applies them
// to the store in one change. It fails only when the directory cannot be
// read.
func (w *Watcher) Load() error {
	fi, err := os.Stat(w.dir)
	if err != nil {
		return fmt.Errorf("config dir: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("config dir %s: not a directory", w.dir)
	}
	files, _, err := w.scan(w.dir)
	if err != nil {
		return err
	}
	w.apply(files, []string{w.dir})
	w.syncOnce.Do(func() { close(w.synced) })
	return nil
}

// Run loads the directory, then applies every change to it until ctx ends.
// Events are gathered for Options.Debounce before they are acted on.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("config dir watch: %w", err)
	}
	defer fw.Close()
	// Watch before the first scan so that no change slips between them.
	if err := w.Load(); err != nil {
		return err
	}
	_, dirs, err := w.scan(w.dir)
	if err != nil {
		return err
	}
	for _, d := range dirs {
		if err := fw.Add(d); err != nil {
			return fmt.Errorf("config dir watch %s: %w", d, err)
		}
	}
	// A change between Load and Add is caught by rescanning once more.
	w.refresh(fw, []string{w.dir})

	pending := map[string]bool{}
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("config dir watch: event channel closed")
			}
			p := ev.Name
			if strings.HasPrefix(filepath.Base(p), "..") {
				// Kubernetes ConfigMap volumes swap a "..data" symlink:
				// re-read the whole directory holding it.
				p = filepath.Dir(p)
			}
			pending[p] = true
			if timer == nil {
				timer = time.NewTimer(w.opts.Debounce)
				fire = timer.C
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("config dir watch: error channel closed")
			}
			w.opts.Logf("config dir watch: %v", err)
		case <-fire:
			timer, fire = nil, nil
			paths := make([]string, 0, len(pending))
			for p := range pending {
				paths = append(paths, p)
			}
			clear(pending)
			sort.Strings(paths)
			w.refresh(fw, paths)
		}
	}
}

// refresh re-reads the given paths (files or directories, present or gone).
func (w *Watcher) refresh(fw *fsnotify.Watcher, paths []string) {
	var files []string
	var roots []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			// Gone: drop it and everything that was under it.
			roots = append(roots, p)
		case fi.IsDir():
			found, dirs, err := w.scan(p)
			if err != nil {
				w.opts.Logf("config dir: %v", err)
				continue
			}
			for _, d := range dirs {
				if err := fw.Add(d); err != nil {
					w.opts.Logf("config dir watch %s: %v", d, err)
				}
			}
			files = append(files, found...)
			roots = append(roots, p)
		case isConfigFile(p):
			files = append(files, p)
			roots = append(roots, p)
		}
	}
	w.apply(files, roots)
}

// scan lists the config files and directories under root, skipping hidden
// entries (editor swap files, ConfigMap "..data" internals are reached
// through their symlinks).
func (w *Watcher) scan(root string) (files, dirs []string, err error) {
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			w.opts.Logf("config dir: %v", err)
			return nil
		}
		if p != root && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if isConfigFile(p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("config dir %s: %w", root, err)
	}
	return files, dirs, nil
}

func isConfigFile(p string) bool {
	base := filepath.Base(p)
	if strings.HasPrefix(base, ".") || strings.HasSuffix(base, "~") {
		return false
	}
	switch strings.ToLower(filepath.Ext(base)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// apply reads files and drops every previously loaded file under roots that
// is not among them, as one store change.
func (w *Watcher) apply(files []string, roots []string) {
	present := map[string]bool{}
	for _, f := range files {
		present[f] = true
	}
	var changes []config.Change
	w.mu.Lock()
	var gone []string
	for p := range w.inStore {
		if !present[p] && underAny(p, roots) {
			gone = append(gone, p)
		}
	}
	for p := range w.content {
		if !present[p] && underAny(p, roots) && !w.inStore[p] {
			delete(w.content, p)
			delete(w.errs, w.display(p))
		}
	}
	sort.Strings(gone)
	for _, p := range gone {
		changes = append(changes, config.Change{Source: SourcePrefix + p, Delete: true})
		delete(w.inStore, p)
		delete(w.defines, p)
		delete(w.content, p)
		delete(w.errs, w.display(p))
		delete(w.warns, w.display(p))
		delete(w.unenf, w.display(p))
		w.opts.Logf("config: %s removed", w.display(p))
	}
	w.mu.Unlock()

	for _, f := range files {
		if c, ok := w.read(f); ok {
			changes = append(changes, c)
		}
	}
	if len(changes) == 0 {
		return
	}
	w.store.Apply(changes)
	w.crossCheck()
}

// conflicts reports resources defined by more than one file; the store
// serves the one from the file whose path sorts last. Called with w.mu held.
func (w *Watcher) conflicts() []validate.Issue {
	paths := make([]string, 0, len(w.defines))
	for p := range w.defines {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	first := map[config.Key]*config.Resource{}
	var out []validate.Issue
	for _, p := range paths {
		for _, r := range w.defines[p] {
			if prev, ok := first[r.Key()]; ok {
				out = append(out, validate.Issue{Source: r.Source, Resource: r.Display(), Field: "metadata.name",
					Message: fmt.Sprintf("also defined in %s; this definition is served, the other ignored", prev.Source)})
			}
			first[r.Key()] = r
		}
	}
	return out
}

// crossCheck runs the whole-directory checks on the served snapshot and
// logs warnings that are new since the last run.
func (w *Watcher) crossCheck() {
	snap := w.store.Snapshot()
	res := validate.Snapshot(snap, validate.HostsFromConfig(snap, snap.KubeObjects(), ""))
	w.mu.Lock()
	res.Warnings = append(res.Warnings, w.conflicts()...)
	w.mu.Unlock()
	cross := map[string][]validate.Issue{}
	for _, is := range res.Warnings {
		file := is.Source
		if i := strings.LastIndexByte(file, '#'); i >= 0 {
			file = file[:i]
		}
		cross[file] = append(cross[file], is)
	}
	w.mu.Lock()
	old := map[string]bool{}
	for _, list := range w.cross {
		for _, is := range list {
			old[is.String()] = true
		}
	}
	w.cross = cross
	w.mu.Unlock()
	for _, is := range res.Warnings {
		if !old[is.String()] {
			w.opts.Logf("config: warning: %s", is.String())
		}
	}
}

func underAny(p string, roots []string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

func (w *Watcher) display(p string) string {
	if rel, err := filepath.Rel(w.dir, p); err == nil && !strings.HasPrefix(rel, "..") {
		return filepath.ToSlash(rel)
	}
	return p
}

// read parses and validates one file. It returns the store change to make,
// or false when nothing should change (same bytes, or errors: the last
// valid content keeps serving).
func (w *Watcher) read(p string) (config.Change, bool) {
	data, err := os.ReadFile(p)
	name := w.display(p)
	if errors.Is(err, fs.ErrNotExist) {
		// Raced with a delete; the delete event will follow.
		return config.Change{}, false
	}
	w.mu.Lock()
	prev, seen := w.content[p]
	w.mu.Unlock()
	if err == nil && seen && bytes.Equal(prev, data) {
		return config.Change{}, false
	}
	var res validate.Result
	var parsed *config.ParseResult
	if err != nil {
		res.Errors = append(res.Errors, validate.Issue{Source: name, Message: fmt.Sprintf("cannot read: %v", err)})
	} else {
		parsed, err = config.ParseWithOptions(data, name, config.ParseOptions{DefaultNamespace: w.opts.DefaultNamespace})
		if err != nil {
			res.Errors = append(res.Errors, validate.Issue{Source: name, Message: err.Error()})
		} else {
			for _, e := range parsed.Errors {
				res.Errors = append(res.Errors, asIssue(e, name))
			}
			for _, r := range parsed.Rejected {
				res.Errors = append(res.Errors, validate.Resource(r).Errors...)
			}
			res.Merge(validate.Resources(parsed.Resources))
			res.Merge(duplicates(parsed.Resources))
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if data != nil {
		w.content[p] = data
	}
	if len(res.Errors) > 0 {
		w.errs[name] = res.Errors
		keeping := "nothing from it is served"
		if w.inStore[p] {
			keeping = "its last valid content keeps serving"
		}
		noun := "errors"
		if len(res.Errors) == 1 {
			noun = "error"
		}
		w.opts.Logf("config: %s rejected (%d %s; %s):", name, len(res.Errors), noun, keeping)
		for _, e := range res.Errors {
			w.opts.Logf("config:   %s", e.String())
		}
		return config.Change{}, false
	}
	delete(w.errs, name)
	if len(res.Warnings) > 0 {
		w.warns[name] = res.Warnings
		for _, e := range res.Warnings {
			w.opts.Logf("config: warning: %s", e.String())
		}
	} else {
		delete(w.warns, name)
	}
	if len(res.NotEnforced) > 0 {
		w.unenf[name] = res.NotEnforced
		for _, e := range res.NotEnforced {
			w.opts.Logf("config: error: %s", e.String())
		}
	} else {
		delete(w.unenf, name)
	}
	w.inStore[p] = true
	w.defines[p] = parsed.Resources
	w.opts.Logf("config: %s loaded (%d resources, %d other objects)", name, len(parsed.Resources), len(parsed.Kube))
	return config.Change{Source: SourcePrefix + p, Resources: parsed.Resources, Kube: parsed.Kube}, true
}

// duplicates reports two objects of the same kind, namespace and name in
// one file.
func duplicates(rs []*config.Resource) validate.Result {
	var res validate.Result
	seen := map[config.Key]*config.Resource{}
	for _, r := range rs {
		if first, ok := seen[r.Key()]; ok {
			res.Errors = append(res.Errors, validate.Issue{Source: r.Source, Resource: r.Display(), Field: "metadata.name",
				Message: fmt.Sprintf("already defined in %s; names must be unique per kind and namespace", first.Source)})
			continue
		}
		seen[r.Key()] = r
	}
	return res
}

func asIssue(err error, source string) validate.Issue {
	var is *config.Issue
	if errors.As(err, &is) {
		return *is
	}
	return validate.Issue{Source: source, Message: err.Error()}
}
