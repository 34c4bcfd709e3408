package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestHotRestartFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
		want    string // "epoch/base/drain/shutdown", "" for off
	}{
		{name: "off by default", args: nil},
		{name: "first epoch", args: []string{"--restart-epoch", "0"}, want: "0/0/45s/1m0s"},
		{name: "successor with times", args: []string{"--restart-epoch", "3", "--base-id", "7", "--drain-time-s", "2", "--parent-shutdown-time-s", "5"}, want: "3/7/2s/5s"},
		{name: "base id needs an epoch", args: []string{"--base-id", "1"}, wantErr: "--base-id: needs --restart-epoch"},
		{name: "negative epoch", args: []string{"--restart-epoch", "-1"}, wantErr: "--restart-epoch: -1 is negative"},
		{name: "zero drain", args: []string{"--restart-epoch", "1", "--drain-time-s", "0"}, wantErr: "--drain-time-s: 0 must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h hotRestartFlags
			f := pflag.NewFlagSet("t", pflag.ContinueOnError)
			h.register(f)
			if err := f.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			o, err := h.options(f)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if o != nil {
				got = fmt.Sprintf("%d/%d/%s/%s", o.Epoch, o.BaseID, o.DrainTime, o.ParentShutdownTime)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
