package libcontainer

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	// nsenter's constructor joins namespaces in the container's init before
	// the Go runtime starts (runc's C half of `init`).
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/skiff-io/skiff/runtime/shim"
)

// InitIfRequested handles the re-executions of the skiff binary that the
// runtime makes, and must be the first thing main (and TestMain of tests
// that start containers) calls:
//
//	skiff init         libcontainer's container init (runc init)
//	skiff shim DIR     the per-container shim (package runtime/shim)
//
// Neither returns. For any other arguments it returns at once.
func InitIfRequested() {
	if len(os.Args) < 2 {
		return
	}
	switch os.Args[1] {
	case "init":
		libcontainer.Init()
	case "shim":
		shim.Main(os.Args[2:])
	}
}
