package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/skiff-io/skiff/nettools"
	"github.com/skiff-io/skiff/runtime"
	"github.com/skiff-io/skiff/runtime/image"
	"github.com/skiff-io/skiff/runtime/libcontainer"
	"github.com/skiff-io/skiff/runtime/shimbin"
)

// newLibcontainerRuntime builds the libcontainer runtime over the node's
// image store (importing the archives dropped in it) and the pod bridge;
// the bridge gets the node's pod CIDR once the master assigned it (the
// agent's UpdateRuntimeConfig).
func newLibcontainerRuntime(dataDir string, podMTU int, routeLocalnet bool, log *slog.Logger) (runtime.Runtime, runtime.ImageService, error) {
	images, err := image.New(image.Options{Root: filepath.Join(dataDir, "agent", "images"), Logger: log})
	if err != nil {
		return nil, nil, err
	}
	if err := images.ImportArchives(context.Background()); err != nil {
		log.Warn("some image archives were not imported", "err", err)
	}
	// Unused images are removed, least recently used first, when the image
	// file system is over 85% full, down to 80% (the kubelet's defaults).
	go images.RunGC(context.Background(), image.DefaultGCPolicy, time.Minute)
	bridge, err := nettools.NewBridge(nettools.BridgeConfig{StateDir: filepath.Join(dataDir, "agent", "ipam"), MTU: podMTU,
		RouteLocalnet: routeLocalnet, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("pod network: %w", err)
	}
	// Shims and container inits run the small skiff-shim binary that
	// `make build` embeds; a build without it re-executes skiff itself.
	shimBinary, err := shimbin.Install(dataDir)
	switch {
	case errors.Is(err, shimbin.ErrNotEmbedded):
		log.Warn("shims and container inits re-execute the whole skiff binary (slower starts, more memory per container)", "reason", err)
		shimBinary = ""
	case err != nil:
		return nil, nil, fmt.Errorf("shim binary: %w", err)
	default:
		log.Debug("shim binary unpacked", "path", shimBinary)
	}
	rt, err := libcontainer.New(libcontainer.Config{DataDir: dataDir, Images: images, Network: bridge, Logger: log, Binary: shimBinary})
	if err != nil {
		return nil, nil, err
	}
	return rt, images, nil
}
