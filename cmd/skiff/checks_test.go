package main

import (
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/server/pki"
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

func TestExplainTokenError(t *testing.T) {
	unauth := apierrors.NewUnauthorized("Unauthorized")
	if err := explainTokenError(unauth, "agent"); !apierrors.IsUnauthorized(err) || !strings.Contains(err.Error(), "skiff token create") {
		t.Errorf("agent: %v", err)
	}
	if err := explainTokenError(unauth, "server"); !strings.Contains(err.Error(), "server token") {
		t.Errorf("server: %v", err)
	}
	if err := explainTokenError(fmt.Errorf("x: %w", pki.ErrCAMismatch), "agent"); !strings.Contains(err.Error(), "another cluster") {
		t.Errorf("CA: %v", err)
	}
}
