package libcontainer

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Network connects pod sandboxes to the node's pod network. The runtime
// calls SetUp once the sandbox's network namespace exists (bind-mounted at
// netnsPath, loopback already up) and TearDown when the sandbox stops;
// hostNetwork sandboxes get neither. nettools.Bridge implements it.
type Network interface {
	// SetUp gives the namespace its interfaces and returns the pod's IPs,
	// the primary first.
	SetUp(ctx context.Context, sandboxID, netnsPath string, cfg *runtimeapi.PodSandboxConfig) (ips []string, err error)
	// TearDown releases what SetUp took. It is called again after a crash,
	// and with a netnsPath that may no longer exist: it must be idempotent.
	TearDown(ctx context.Context, sandboxID, netnsPath string) error
}
