// Command skiff-shim is the small binary that runs as Skiff's per-container
// shim (`skiff-shim shim DIR`, package runtime/shim) and, re-executed by
// the shim through libcontainer, as the container's init (`init`, runc's
// init). It links runc's libcontainer and the shim only, nothing of
// k8s.io, Prometheus or the log store, so that a start costs little CPU
// and a shim little memory. `make build` embeds it in skiff (package
// runtime/shimbin), which unpacks it into the data dir.
package main

import (
	"fmt"
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's constructor joins namespaces in the container's init before
	// the Go runtime starts (runc's C half of `init`).
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/skiff-io/skiff/runtime/shim"
)

func main() {
	if len(os.Args) >= 2 {
		switch os.Args[1] {
		case "init":
			libcontainer.Init() // never returns
		case "shim":
			shim.Main(os.Args[2:]) // never returns
		}
	}
	fmt.Fprintln(os.Stderr, "skiff-shim: started by Skiff's runtime only (arguments: init, or shim DIR)")
	os.Exit(2)
}
