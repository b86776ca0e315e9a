package main

import (
	"fmt"
	"log/slog"

	"github.com/skiff-io/skiff/runtime"
	"github.com/skiff-io/skiff/runtime/fake"
)

// newRuntime builds the container runtime and image service named by
// --runtime.
// routeLocalnet: the node's proxy guards 127.0.0.0/8 (nftables mode), so
// the pod bridge may route to loopback endpoints (nettools.BridgeConfig).
func newRuntime(name, dataDir string, podMTU int, routeLocalnet bool, log *slog.Logger) (runtime.Runtime, runtime.ImageService, error) {
	switch name {
	case "fake":
		return fake.NewFakeRuntime(), fake.NewFakeImageService(), nil
	case "libcontainer", "":
		return newLibcontainerRuntime(dataDir, podMTU, routeLocalnet, log)
	}
	return nil, nil, fmt.Errorf("--runtime %q: want libcontainer or fake", name)
}
