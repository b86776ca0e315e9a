package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/agent"
	"github.com/skiff-io/skiff/client"
	"github.com/skiff-io/skiff/server"
	"github.com/skiff-io/skiff/server/pki"
)

// nodeOptions configure an agent, standalone or embedded in a master.
type nodeOptions struct {
	Server      string
	Token       string
	DataDir     string
	NodeName    string
	BindAddress string
	KubeletPort int
	Runtime     string

	LeaseDuration  time.Duration
	StatusInterval time.Duration
	BackoffBase    time.Duration

	// Set by the embedding master: credentials issued locally, the node's
	// address and labels.
	Creds  *pki.NodeCredentials
	NodeIP string
	Labels map[string]string

	Logger *slog.Logger
}

// runAgent gets node credentials (saved ones, or through node bootstrap
// with the token), then runs the kubelet until ctx ends.
func runAgent(ctx context.Context, o nodeOptions) error {
	log := o.Logger
	if o.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("node name: %w", err)
		}
		o.NodeName = strings.ToLower(h)
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	if o.NodeIP == "" {
		o.NodeIP = o.BindAddress
		if ip := net.ParseIP(o.BindAddress); ip == nil || ip.IsUnspecified() {
			if o.NodeIP, err = client.LocalAddressFor(o.Server); err != nil {
				return fmt.Errorf("node address (give --bind-address): %w", err)
			}
		}
	}
	credDir := filepath.Join(dataDir, "agent")
	addresses := []string{o.NodeIP}
	creds := o.Creds
	if creds == nil {
		creds, err = client.LoadNodeCredentials(credDir, o.NodeName, addresses)
		if err != nil {
			if o.Token == "" {
				return fmt.Errorf("no usable node credentials in %s (%v) and no --token to get new ones", credDir, err)
			}
			creds, err = bootstrapWithRetry(ctx, o, addresses)
			if err != nil {
				return err
			}
			if err := client.SaveNodeCredentials(credDir, creds); err != nil {
				return err
			}
			log.Info("node credentials issued", "node", o.NodeName, "dir", credDir)
		}
	}
	restCfg := client.NodeRESTConfig(o.Server, creds)
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	evCfg := rest.CopyConfig(restCfg)
	evCfg.QPS, evCfg.Burst = 50, 100
	evCS, err := kubernetes.NewForConfig(evCfg)
	if err != nil {
		return err
	}
	servingTLS, err := client.KubeletServingTLS(creds)
	if err != nil {
		return err
	}
	rt, images, err := newRuntime(o.Runtime, dataDir, log)
	if err != nil {
		return err
	}
	cfg := agent.Config{
		NodeName: o.NodeName, DataDir: dataDir, NodeIP: o.NodeIP, BindAddress: o.BindAddress,
		KubeletPort: o.KubeletPort, ServingTLS: servingTLS, Client: cs, EventClient: evCS, Labels: o.Labels,
		Runtime: rt, Images: images, Logger: log,
		LeaseDuration: o.LeaseDuration, NodeStatusInterval: o.StatusInterval, BackoffBase: o.BackoffBase,
	}
	if o.Runtime == "fake" {
		// Simulated containers need no tmpfs for their volumes.
		cfg.Mounter = agent.DirMounter{}
	}
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	log.Info("agent starting", "node", o.NodeName, "server", o.Server, "node-ip", o.NodeIP, "kubelet", a.Addr(), "runtime", o.Runtime)
	return a.Run(ctx)
}

func bootstrapWithRetry(ctx context.Context, o nodeOptions, addresses []string) (*pki.NodeCredentials, error) {
	backoff := 500 * time.Millisecond
	for {
		bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		creds, err := client.BootstrapNode(bctx, o.Server, o.Token, pki.NodeBootstrapRequest{NodeName: o.NodeName, Addresses: addresses})
		cancel()
		if err == nil {
			return creds, nil
		}
		if strings.Contains(err.Error(), "does not match") || strings.Contains(err.Error(), "join token") {
			return nil, err // a wrong token does not get better
		}
		o.Logger.Warn("node bootstrap failed, retrying", "server", o.Server, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// runEmbeddedAgent runs the agent of a master's own node, with node
// credentials the master issues itself (no token round trip).
func runEmbeddedAgent(ctx context.Context, s *server.Server, o nodeOptions) error {
	cfg := s.Config()
	o.Server = s.APIURL()
	o.DataDir = cfg.DataDir
	o.NodeName = cfg.NodeName
	o.NodeIP = cfg.AdvertiseAddress
	o.BindAddress = cfg.BindAddress
	o.Logger = cfg.Logger
	creds, err := s.NodeCredentials(o.NodeName, []string{cfg.AdvertiseAddress, cfg.BindAddress})
	if err != nil {
		return err
	}
	o.Creds = creds
	o.Labels = map[string]string{"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true"}
	return runAgent(ctx, o)
}
