package main

import (
	"context"
	"sync"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/nettools/netpol"
	"github.com/skiff-io/skiff/nettools/routes"
	"github.com/skiff-io/skiff/server"
)

// networkOptions are the pod network settings of an agent (standalone or
// embedded in a master).
type networkOptions struct {
	ClusterCIDR          string
	FlannelBackend       string
	DisableNetworkPolicy bool
}

func addNetworkFlags(f *pflag.FlagSet, o *networkOptions, withCIDR bool) {
	f.StringVar(&o.FlannelBackend, "flannel-backend", string(routes.DefaultBackend),
		"how pod traffic crosses nodes: vxlan (UDP 8472 encapsulation, works across L3), host-gw (plain routes via the nodes' InternalIPs, nodes on one L2 segment), or none (no routes or masquerading by Skiff)")
	f.BoolVar(&o.DisableNetworkPolicy, "disable-network-policy", false, "do not enforce NetworkPolicies on this node's pods")
	if withCIDR {
		f.StringVar(&o.ClusterCIDR, "cluster-cidr", server.DefaultClusterCIDR, "pod address range of the cluster (as the masters' --cluster-cidr): traffic from it to elsewhere is masqueraded")
	}
}

// podNetwork is the node's share of the cluster network: routes to the
// other nodes' pod CIDRs, the masquerade rule and NetworkPolicy
// enforcement.
type podNetwork struct {
	routes *routes.Controller // nil with backend none
	policy *netpol.Controller // nil with --disable-network-policy
	wg     sync.WaitGroup
}

// newPodNetwork prepares the pod network controllers of a node running
// real containers.
func newPodNetwork(o nodeOptions, cs kubernetes.Interface) (*podNetwork, error) {
	backend, err := routes.ParseBackend(o.Network.FlannelBackend)
	if err != nil {
		return nil, err
	}
	n := &podNetwork{}
	if backend != routes.None {
		if n.routes, err = routes.New(routes.Config{Client: cs, NodeName: o.NodeName, NodeIP: o.NodeIP,
			ClusterCIDR: o.Network.ClusterCIDR, Backend: backend, Logger: o.Logger}); err != nil {
			return nil, err
		}
	}
	if !o.Network.DisableNetworkPolicy {
		if n.policy, err = netpol.New(netpol.Config{Client: cs, NodeName: o.NodeName, Logger: o.Logger}); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// PodMTU is the MTU to give pod interfaces (0: the default).
func (n *podNetwork) PodMTU() int {
	if n == nil || n.routes == nil {
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
	if n.routes != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.routes.Run(ctx); err != nil && ctx.Err() == nil {
				n.routes.Logger().Error("pod routes stopped", "err", err)
			}
		}()
	}
	if n.policy != nil {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.policy.Run(ctx); err != nil && ctx.Err() == nil {
				n.policy.Logger().Error("network policy enforcement stopped", "err", err)
			}
		}()
	}
}

func (n *podNetwork) Wait() {
	if n != nil {
		n.wg.Wait()
	}
}
