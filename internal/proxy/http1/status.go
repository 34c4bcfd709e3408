package http1

import "net/http"

// StatusText returns the reason phrase for code ("Unknown" if none).
func StatusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "Unknown"
}
