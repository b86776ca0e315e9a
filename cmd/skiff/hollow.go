package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiff-io/skiff/agent/hollow"
	"github.com/skiff-io/skiff/client"
)

// hollowOptions are the flags of `skiff agent --hollow-nodes N`.
type hollowOptions struct {
	Count      int
	Prefix     string
	Kubeconfig string
	CPU        string
	Memory     string
	Pods       string
	Zones      int
}

func addHollowFlags(f interface {
	IntVar(p *int, name string, value int, usage string)
	StringVar(p *string, name string, value string, usage string)
}, o *hollowOptions) {
	f.IntVar(&o.Count, "hollow-nodes", 0, "run this many hollow nodes in this process (needs --runtime fake), as kubemark does")
	f.StringVar(&o.Prefix, "hollow-node-prefix", "hollow", "hollow nodes are named <prefix>-0, <prefix>-1, ...")
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "with --hollow-nodes: one credential shared by every hollow node (e.g. an admin kubeconfig); without it each node bootstraps its own with the token")
	f.StringVar(&o.CPU, "hollow-node-cpu", "4", "CPU capacity each hollow node reports")
	f.StringVar(&o.Memory, "hollow-node-memory", "16Gi", "memory capacity each hollow node reports")
	f.StringVar(&o.Pods, "hollow-node-pods", "110", "pods capacity each hollow node reports")
	f.IntVar(&o.Zones, "hollow-zones", 0, "spread the hollow nodes over this many zones (label topology.kubernetes.io/zone)")
}

// runHollowNodes runs --hollow-nodes hollow nodes against the server.
func runHollowNodes(ctx context.Context, o nodeOptions, h hollowOptions) error {
	if o.Runtime != "fake" {
		return errors.New("--hollow-nodes needs --runtime fake")
	}
	capacity := corev1.ResourceList{}
	for name, v := range map[corev1.ResourceName]string{corev1.ResourceCPU: h.CPU, corev1.ResourceMemory: h.Memory, corev1.ResourcePods: h.Pods} {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("hollow node %s capacity %q: %w", name, v, err)
		}
		capacity[name] = q
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	nodeIP := o.BindAddress
	if ip := net.ParseIP(nodeIP); ip == nil || ip.IsUnspecified() {
		if nodeIP, err = client.LocalAddressFor(o.Server); err != nil {
			return fmt.Errorf("node address (give --bind-address): %w", err)
		}
	}
	cfg := hollow.Config{
		Count: h.Count, NamePrefix: h.Prefix, DataDir: filepath.Join(dataDir, "hollow"), NodeIP: nodeIP,
		Capacity: capacity, Zones: h.Zones, Logger: o.Logger,
		LeaseDuration: o.LeaseDuration, NodeStatusInterval: o.StatusInterval, BackoffBase: o.BackoffBase,
		StatsInterval: o.StatsInterval,
		Gossip:        !o.NoGossip, GossipPort: o.GossipPort, GossipProfile: o.GossipProfile, GossipKeys: o.GossipKeys,
	}
	if h.Kubeconfig != "" {
		rc, err := clientcmd.BuildConfigFromFlags(o.Server, h.Kubeconfig)
		if err != nil {
			return fmt.Errorf("--kubeconfig: %w", err)
		}
		rc.QPS, rc.Burst = -1, 0 // one client for all nodes: no client-side limit
		rc.UserAgent = "skiff-hollow-node"
		if cfg.Client, err = kubernetes.NewForConfig(rc); err != nil {
			return err
		}
	} else {
		if o.Token == "" {
			return errors.New("--hollow-nodes needs --kubeconfig or --token")
		}
		cfg.NodeClient = func(ctx context.Context, name string) (kubernetes.Interface, error) {
			credDir := filepath.Join(cfg.DataDir, name, "agent")
			addresses := []string{nodeIP}
			creds, err := client.LoadNodeCredentials(credDir, name, addresses)
			if err != nil {
				no := o
				no.NodeName = name
				if creds, err = bootstrapWithRetry(ctx, no, addresses); err != nil {
					return nil, err
				}
				if err := client.SaveNodeCredentials(credDir, creds); err != nil {
					return nil, err
				}
			}
			certs, err := client.NewNodeCertificates(credDir, creds)
			if err != nil {
				return nil, err
			}
			rc, err := certs.RESTConfig(o.Server)
			if err != nil {
				return nil, err
			}
			return kubernetes.NewForConfig(rc)
		}
	}
	return hollow.Run(ctx, cfg)
}
