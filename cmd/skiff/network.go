package main

import (
	"context"
	"sync"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/nettools/routes"
	"github.com/skiff-io/skiff/server"
)

// networkOptions are the pod network settings of an agent (standalone or
// embedded in a master).
type networkOptions struct {
	ClusterCIDR    string
	FlannelBackend string
}

func addNetworkFlags(f *pflag.FlagSet, o *networkOptions, withCIDR bool) {
	f.StringVar(&o.FlannelBackend, "flannel-backend", string(routes.DefaultBackend),
		"how pod traffic crosses nodes: vxlan (UDP 8472 encapsulation, works across L3), host-gw (plain routes via the nodes' InternalIPs, nodes on one L2 segment), or none (no routes or masquerading by Skiff)")
	if withCIDR {
		f.StringVar(&o.ClusterCIDR, "cluster-cidr", server.DefaultClusterCIDR, "pod address range of the cluster (as the masters' --cluster-cidr): traffic from it to elsewhere is masqueraded")
	}
}

// podNetwork is the node's share of the cluster network: routes to the
// other nodes' pod CIDRs and the masquerade rule.
type podNetwork struct {
	routes *routes.Controller
	wg     sync.WaitGroup
}

// newPodNetwork prepares the pod network controllers of a node running
// real containers; nil with backend none.
func newPodNetwork(o nodeOptions, cs kubernetes.Interface) (*podNetwork, error) {
	backend, err := routes.ParseBackend(o.Network.FlannelBackend)
	if err != nil || backend == routes.None {
		return nil, err
	}
	rc, err := routes.New(routes.Config{Client: cs, NodeName: o.NodeName, NodeIP: o.NodeIP,
		ClusterCIDR: o.Network.ClusterCIDR, Backend: backend, Logger: o.Logger})
	if err != nil {
		return nil, err
	}
	return &podNetwork{routes: rc}, nil
}

// PodMTU is the MTU to give pod interfaces (0: the default).
func (n *podNetwork) PodMTU() int {
	if n == nil {
		return 0
	}
	return n.routes.PodMTU()
}

// Start runs the controllers until ctx ends; Wait waits for their
// clean-up.
func (n *podNetwork) Start(ctx context.Context) {
	if n == nil {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.routes.Run(ctx); err != nil && ctx.Err() == nil {
			n.routes.Logger().Error("pod routes stopped", "err", err)
		}
	}()
}

func (n *podNetwork) Wait() {
	if n != nil {
		n.wg.Wait()
	}
}
