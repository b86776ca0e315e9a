package libcontainer

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/skiff-io/skiff/nettools"
	"github.com/skiff-io/skiff/runtime/image"
)

// NodeConfig is what NewNode needs; every field but DataDir has a default
// that works on a single machine.
type NodeConfig struct {
	// DataDir is the node's data dir (--data-dir).
	DataDir string
	// PodCIDR is the node's pod CIDR if already known; otherwise the agent
	// passes it later with UpdateRuntimeConfig.
	PodCIDR string
	// Bridge is the pod bridge's name, default skiff0.
	Bridge string
	// PodPidsLimit caps the processes of each pod (0: no limit).
	PodPidsLimit int64
	Logger       *slog.Logger
}

// NewNode builds a node's container runtime from its data dir: the image
// store (<data-dir>/agent/images, with <data-dir>/agent/registries.yaml),
// importing the archives dropped in the store; the bridge pod network
// (addresses kept in <data-dir>/agent/ipam); and the Runtime, which adopts
// the containers a previous agent left running. The Runtime implements
// runtime.Runtime, the Store runtime.ImageService.
func NewNode(ctx context.Context, cfg NodeConfig) (*Runtime, *image.Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	agentDir := filepath.Join(cfg.DataDir, "agent")
	images, err := image.New(image.Options{Root: filepath.Join(agentDir, "images"), Logger: cfg.Logger})
	if err != nil {
		return nil, nil, err
	}
	if err := images.ImportArchives(ctx); err != nil {
		// A bad archive must not keep the node down; it is logged.
		cfg.Logger.Warn("some image archives could not be imported", "err", err)
	}
	bridge, err := nettools.NewBridge(nettools.BridgeConfig{
		Name:     cfg.Bridge,
		PodCIDR:  cfg.PodCIDR,
		StateDir: filepath.Join(agentDir, "ipam"),
		Logger:   cfg.Logger,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("pod network: %w", err)
	}
	rt, err := New(Config{DataDir: cfg.DataDir, Images: images, Network: bridge, PodPidsLimit: cfg.PodPidsLimit, Logger: cfg.Logger})
	if err != nil {
		return nil, nil, err
	}
	return rt, images, nil
}
