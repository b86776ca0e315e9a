package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// nodeCIDRBits is the size of each node's pod CIDR (/24: 254 pods).
const nodeCIDRBits = 24

// startLeaderWork starts the leader's long-running loops; they stop when
// ctx ends (leadership lost), and the returned group waits for them.
func (s *Server) startLeaderWork(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.nodeIPAMLoop(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.gossipLeaderLoop(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.kubernetesServiceLoop(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.snapshotScheduleLoop(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.apiServiceLoop(ctx) // apiservices.go
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.flowSchemaStatusLoop(ctx) // flowcontrol.go
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.crdCleanupLoop(ctx) // crdcleanup.go
	}()
	// The scheduler and the controllers share one informer factory that
	// reads the state in process; without it each falls back to informers
	// of its own over the loopback API.
	var shared informers.SharedInformerFactory
	if cfg, err := s.loopbackConfig("system:kube-controller-manager"); err != nil {
		s.log.Error("controllers not started", "err", err)
	} else {
		if shared, err = s.leaderInformers(ctx, cfg, &wg); err != nil {
			s.log.Warn("in-process informers unavailable: informers go through the loopback API", "err", err)
		}
		s.startControllers(ctx, &wg, cfg, shared)
	}
	s.startScheduler(ctx, &wg, shared)
	s.startAddonManager(ctx, &wg)
	return &wg
}

// nodeIPAMLoop gives every Node without spec.podCIDR the lowest free /24
// of the cluster CIDR, persisted through Raft like any update (with UID and
// resourceVersion preconditions, so a concurrent change wins and the node
// is looked at again).
func (s *Server) nodeIPAMLoop(ctx context.Context) {
	cluster, err := netip.ParsePrefix(s.cfg.ClusterCIDR)
	if err != nil || !cluster.Addr().Is4() || cluster.Bits() > nodeCIDRBits {
		s.log.Error("node IPAM disabled: --cluster-cidr must be an IPv4 prefix of /24 or larger", "cluster-cidr", s.cfg.ClusterCIDR)
		return
	}
	cluster = cluster.Masked()
	kind, _ := registry.New().Lookup("", "v1", "nodes")
	log := s.log.With("loop", "node-ipam")
	seen := map[string]nodeCIDRMemo{}
	var w *fsm.Watcher
	defer func() {
		if w != nil {
			w.Stop()
		}
	}()
	for {
		// Watch Node changes from the state about to be examined: a pass
		// is due when a node without a pod CIDR shows up (not on every
		// write, nor on every node heartbeat), and every 10s anyway.
		if w == nil {
			var err error
			if w, err = s.fsm.WatchFiltered(s.fsm.Index(), fsm.WatchFilter{Resource: kind.StorageResource()}); err != nil {
				w = nil
			}
		}
		if err := s.assignPodCIDRs(ctx, kind, cluster, seen); err != nil && ctx.Err() == nil {
			log.Warn("assign pod CIDRs", "err", err)
		}
		if !s.waitForNodeWithoutCIDR(ctx, kind, w, 10*time.Second) && w != nil {
			w.Stop()
			w = nil // expired (or timed out): watch afresh
		}
		if ctx.Err() != nil {
			return
		}
		// Coalesce bursts of new nodes.
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitForNodeWithoutCIDR waits until w shows a node without spec.podCIDR,
// or timeout passes; it reports whether w is still usable.
func (s *Server) waitForNodeWithoutCIDR(ctx context.Context, kind *registry.Kind, w *fsm.Watcher, timeout time.Duration) bool {
	if w == nil {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		evs, err := w.Next(ctx)
		if err != nil {
			return !errors.Is(err, fsm.ErrExpired) && ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled)
		}
		for _, ev := range evs {
			if ev.Type == fsm.Deleted || ev.Object == nil {
				continue
			}
			obj, err := kind.Decode(ev.Object)
			if err != nil || obj.(*corev1.Node).Spec.PodCIDR == "" {
				return true
			}
		}
	}
}

// nodeCIDRMemo is a node's podCIDR as of a resourceVersion, so that a pass
// decodes only the nodes that changed since the last one (thousands of
// nodes, and a pass after every write).
type nodeCIDRMemo struct {
	modifyIndex uint64
	cidr        string
}

func (s *Server) assignPodCIDRs(ctx context.Context, kind *registry.Kind, cluster netip.Prefix, seen map[string]nodeCIDRMemo) error {
	snap := s.fsm.Read()
	used := map[netip.Prefix]bool{}
	var pending []*state.Object
	var derr error
	present := make(map[string]bool, len(seen))
	snap.List(kind.StorageResource(), "", "", func(o *state.Object) bool {
		present[o.ID] = true
		m, ok := seen[o.ID]
		if !ok || m.modifyIndex != o.ModifyIndex {
			obj, err := kind.Decode(o)
			if err != nil {
				derr = err
				return true
			}
			m = nodeCIDRMemo{modifyIndex: o.ModifyIndex, cidr: obj.(*corev1.Node).Spec.PodCIDR}
			seen[o.ID] = m
		}
		if m.cidr == "" {
			pending = append(pending, o)
			return true
		}
		if p, err := netip.ParsePrefix(m.cidr); err == nil {
			used[p.Masked()] = true
		}
		return true
	})
	for id := range seen {
		if !present[id] {
			delete(seen, id)
		}
	}
	if derr != nil {
		return derr
	}
	sort.Slice(pending, func(i, j int) bool { return pending[i].CreateIndex < pending[j].CreateIndex })
	for _, o := range pending {
		cidr, ok := nextFreeCIDR(cluster, used)
		if !ok {
			return fmt.Errorf("cluster CIDR %s is exhausted: node %s gets no pod CIDR", cluster, o.Key.Name)
		}
		obj, err := kind.Decode(o)
		if err != nil {
			return err
		}
		n := obj.(*corev1.Node)
		n.Spec.PodCIDR = cidr.String()
		n.Spec.PodCIDRs = []string{cidr.String()}
		data, err := kind.Encode(n)
		if err != nil {
			return err
		}
		entry, err := fsm.EncodeMutation(fsm.Mutation{Op: fsm.OpUpdate, Key: o.Key, Object: data,
			Preconditions: &fsm.Preconditions{UID: o.UID, ResourceVersion: o.ModifyIndex}})
		if err != nil {
			return err
		}
		res, err := s.apply(ctx, entry)
		if err != nil {
			return err
		}
		if res.Err != nil {
			continue // changed meanwhile: the next pass looks again
		}
		used[cidr] = true
		s.log.Info("assigned pod CIDR", "node", n.Name, "cidr", cidr)
	}
	return nil
}

// nextFreeCIDR returns the lowest /24 of cluster not in used.
func nextFreeCIDR(cluster netip.Prefix, used map[netip.Prefix]bool) (netip.Prefix, bool) {
	n := 1 << (nodeCIDRBits - cluster.Bits())
	base := cluster.Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i := 0; i < n; i++ {
		v := start + uint32(i)<<(32-nodeCIDRBits)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), nodeCIDRBits)
		if !used[p] {
			return p, true
		}
	}
	return netip.Prefix{}, false
}
