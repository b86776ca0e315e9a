package scheduler

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeInfo is a node and the pods on it (bound or assumed), with the sums
// the filters need. NodeInfos in a Snapshot are never changed: the cache
// clones a node's info when it changes.
type NodeInfo struct {
	node *corev1.Node
	// name is the node's name, kept here: every filter and score asks.
	name string
	Pods []*PodInfo
	// PodsWithAffinity have pod affinity or anti-affinity terms;
	// PodsWithRequiredAntiAffinity have required anti-affinity terms.
	PodsWithAffinity             []*PodInfo
	PodsWithRequiredAntiAffinity []*PodInfo
	// UsedPorts are the host ports taken, by protocol and port, each with
	// the host IPs.
	UsedPorts map[portKey][]string
	// Requested is the sum of the pods' requests; NonZeroRequested counts
	// containers without requests at the scoring defaults.
	Requested        Resource
	NonZeroRequested Resource
	Allocatable      Resource
	// Images maps the normalized names of the images on the node to their
	// sizes.
	Images map[string]int64
	// Generation grows on every change.
	Generation int64
}

type portKey struct {
	Protocol corev1.Protocol
	Port     int32
}

// NewNodeInfo returns the info of a node with pods.
func NewNodeInfo(node *corev1.Node, pods ...*PodInfo) *NodeInfo {
	n := &NodeInfo{UsedPorts: map[portKey][]string{}}
	if node != nil {
		n.SetNode(node)
	}
	for _, p := range pods {
		n.AddPod(p)
	}
	return n
}

// Node returns the node (nil for pods of a node the cache has not seen).
func (n *NodeInfo) Node() *corev1.Node { return n.node }

// Name is the node's name.
func (n *NodeInfo) Name() string { return n.name }

// SetNode sets the node and its allocatable resources.
func (n *NodeInfo) SetNode(node *corev1.Node) {
	n.node, n.name = node, node.Name
	n.Allocatable = NewResource(node.Status.Allocatable)
	n.Images = nodeImages(node)
}

// AddPod accounts a pod to the node.
func (n *NodeInfo) AddPod(p *PodInfo) {
	n.Pods = append(n.Pods, p)
	if p.hasAffinity() {
		n.PodsWithAffinity = append(n.PodsWithAffinity, p)
	}
	if len(p.RequiredAntiAffinityTerms) > 0 {
		n.PodsWithRequiredAntiAffinity = append(n.PodsWithRequiredAntiAffinity, p)
	}
	n.account(p, 1)
}

// RemovePod removes the pod with uid; it reports whether it was there.
func (n *NodeInfo) RemovePod(uid types.UID) bool {
	idx := -1
	for i, p := range n.Pods {
		if p.Pod.UID == uid {
			idx = i
			break
		}
	}
	if idx < 0 {
		return false
	}
	p := n.Pods[idx]
	n.Pods = removeAt(n.Pods, idx)
	n.PodsWithAffinity = removeUID(n.PodsWithAffinity, uid)
	n.PodsWithRequiredAntiAffinity = removeUID(n.PodsWithRequiredAntiAffinity, uid)
	n.account(p, -1)
	return true
}

// removeAt removes element i; the slice is copied so that clones sharing
// the backing array are not disturbed.
func removeAt(s []*PodInfo, i int) []*PodInfo {
	out := make([]*PodInfo, 0, len(s)-1)
	out = append(out, s[:i]...)
	return append(out, s[i+1:]...)
}

func removeUID(s []*PodInfo, uid types.UID) []*PodInfo {
	for i, p := range s {
		if p.Pod.UID == uid {
			return removeAt(s, i)
		}
	}
	return s
}

func (n *NodeInfo) account(p *PodInfo, sign int64) {
	n.Requested.AddResource(&p.Requests, sign)
	n.NonZeroRequested.MilliCPU += sign * p.NonZeroCPU
	n.NonZeroRequested.Memory += sign * p.NonZeroMemory
	for _, hp := range p.HostPorts {
		k := portKey{hp.Protocol, hp.Port}
		if sign > 0 {
			n.UsedPorts[k] = append(n.UsedPorts[k], hp.IP)
			continue
		}
		ips := n.UsedPorts[k]
		for i, ip := range ips {
			if ip == hp.IP {
				ips = append(append([]string(nil), ips[:i]...), ips[i+1:]...)
				break
			}
		}
		if len(ips) == 0 {
			delete(n.UsedPorts, k)
		} else {
			n.UsedPorts[k] = ips
		}
	}
}

// Clone copies the node info; pods and the node are shared (immutable).
func (n *NodeInfo) Clone() *NodeInfo {
	c := &NodeInfo{
		node:                         n.node,
		name:                         n.name,
		Pods:                         append([]*PodInfo(nil), n.Pods...),
		PodsWithAffinity:             append([]*PodInfo(nil), n.PodsWithAffinity...),
		PodsWithRequiredAntiAffinity: append([]*PodInfo(nil), n.PodsWithRequiredAntiAffinity...),
		UsedPorts:                    make(map[portKey][]string, len(n.UsedPorts)),
		Requested:                    n.Requested.Clone(),
		NonZeroRequested:             n.NonZeroRequested.Clone(),
		Allocatable:                  n.Allocatable.Clone(),
		Images:                       n.Images,
		Generation:                   n.Generation,
	}
	for k, v := range n.UsedPorts {
		c.UsedPorts[k] = append([]string(nil), v...)
	}
	return c
}

// portConflict reports whether hp clashes with a used port: same protocol
// and port, and the same host IP or either is 0.0.0.0.
func (n *NodeInfo) portConflict(hp hostPort) bool {
	for _, ip := range n.UsedPorts[portKey{hp.Protocol, hp.Port}] {
		if ip == hp.IP || ip == "0.0.0.0" || hp.IP == "0.0.0.0" {
			return true
		}
	}
	return false
}
