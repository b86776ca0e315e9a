package main

import (
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/skiff-io/skiff/server/apiserver"
)

// version and commit are set at link time by the Makefile
// (-ldflags "-X main.version=... -X main.commit=...").
var (
	version = "dev"
	commit  = "unknown"
)

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Skiff's version, commit, Go version and Kubernetes API level",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			printVersion(cmd.OutOrStdout())
			return nil
		},
	}
}

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "skiff %s (commit %s)\n", version, commit)
	fmt.Fprintf(w, "Kubernetes API %s (k8s.io/api %s)\n", apiserver.GitVersion, moduleVersion("k8s.io/api"))
	fmt.Fprintf(w, "Go %s %s/%s\n", goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
}

// moduleVersion is the version of dependency path built into the binary.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}
