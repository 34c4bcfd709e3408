package cli

import (
	"io"
	"strings"
)

// runLog shows (GET) or sets (POST) /logging levels.
func runLog(t *pcTarget, level string, w io.Writer) error {
	if level == "" {
		b, err := t.get("/logging")
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	q := make([]string, 0, 2)
	for _, part := range strings.Split(level, ",") {
		name, lv, ok := strings.Cut(part, ":")
		if !ok {
			q = append(q, "level="+part)
			continue
		}
		q = append(q, name+"="+lv)
	}
	b, err := t.post("/logging?" + strings.Join(q, "&"))
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
