// Package file is the local configuration source: it loads a directory of
// Istio YAML/JSON (`trellisd --config-dir DIR`) into a config.Store and
// keeps the store in step as files are added, edited and deleted.
//
// Flow: directory -> fsnotify (debounced) -> config.Parse ->
// validate.Resource -> config.Store (one source per file). A file with any
// error is rejected as a whole and its last valid content keeps serving.
package file
