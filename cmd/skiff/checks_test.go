package main

import (
	"strings"
	"testing"
)

func TestMasterURL(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"https://10.0.0.1:6443", "https://10.0.0.1:6443", ""},
		{"https://10.0.0.1:6443/", "https://10.0.0.1:6443", ""},
		{"https://m1.example", "https://m1.example:6443", ""},
		{"127.0.0.1:6443", "", `give https://127.0.0.1:6443`},
		{"10.0.0.1", "", `give https://10.0.0.1:6443`},
		{"http://10.0.0.1:6443", "", "only HTTPS: give https://10.0.0.1:6443"},
		{"https://10.0.0.1:6443/api", "", "no path"},
	} {
		got, err := masterURL("--join", c.in)
		if c.err == "" {
			if err != nil || got != c.want {
				t.Errorf("%q: got %q, %v; want %q", c.in, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: error %v, want one containing %q", c.in, err, c.err)
		}
	}
}
