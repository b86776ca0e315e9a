package main

import (
	"fmt"
	"log/slog"

	"github.com/skiff-io/skiff/runtime"
	"github.com/skiff-io/skiff/runtime/fake"
)

// newRuntime builds the container runtime and image service named by
// --runtime.
func newRuntime(name, dataDir string, podMTU int, log *slog.Logger) (runtime.Runtime, runtime.ImageService, error) {
	switch name {
	case "fake":
		return fake.NewFakeRuntime(), fake.NewFakeImageService(), nil
	case "libcontainer", "":
		return newLibcontainerRuntime(dataDir, podMTU, log)
	}
	return nil, nil, fmt.Errorf("--runtime %q: want libcontainer or fake", name)
}
