package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		root := newRootCommand()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, want := range []string{"skiff " + version, "Kubernetes API v1.", "k8s.io/api v0.", "Go go1."} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: output %q lacks %q", args, out.String(), want)
			}
		}
	}
}
