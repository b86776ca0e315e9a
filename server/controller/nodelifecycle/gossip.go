package nodelifecycle

import (
	"context"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// GossipState is gossip's view of one node's member.
type GossipState struct {
	// Down: gossip declared the member failed or left (Status), at Since
	// (the leader's clock).
	Down   bool
	Status string
	Since  time.Time
	// Stopping: the member announced a planned stop (SIGTERM) before it
	// went; the verdict is then left to the Lease.
	Stopping bool
}

// Gossip is membership as the node lifecycle controller needs it: the
// Raft leader's serf member (package gossip), adapted by the server.
type Gossip interface {
	// NodeStates maps node names to their members' states.
	NodeStates() map[string]GossipState
	// Notify signals membership changes (coalesced); cancel stops it.
	Notify() (<-chan struct{}, func())
}

// The combination rule (docs/gossip.md):
//
//   - gossip reports the node's member failed or left at time F, and no
//     Lease renewal was seen since F - GossipLeaseSlack (or none for half
//     the Lease's duration): the kubelet is gone too. Ready becomes
//     Unknown (reason NodeStatusUnknown, message "gossip: node failed")
//     at once, and the usual taints and evictions follow.
//   - gossip reports it down while its Lease is still renewed: gossip is
//     wrong about it (a gossip-only partition, a starved probe). A
//     Warning event GossipMemberDown says so; nothing is tainted.
//   - a node marked for a gossip verdict whose kubelet then reports Ready
//     while gossip still says down is not marked again for that verdict.
//   - gossip says nothing (alive, or no member), or the member announced
//     a planned stop before it went (a SIGTERMed agent or master: a
//     restart, an upgrade): the Lease alone decides, after GracePeriod,
//     as in Kubernetes.
//
// A renewal seen since F - slack, with slack below the shortest failure
// detection time, proves the kubelet ran while gossip already suspected
// it. Renewals are timed by when this controller saw them (its own clock),
// not by the node's clock.

// watchLeaseRenewals records, by the local clock, when each node's Lease
// renewal was seen.
func (c *Controller) watchLeaseRenewals() {
	_, _ = c.leaseInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			l, ok := obj.(*coordinationv1.Lease)
			if !ok || l.Namespace != leaseNamespace {
				return
			}
			// Known before this controller started: the node's own time,
			// never later than now.
			at := renewTime(l)
			if now := c.cc.Now(); at.After(now) {
				at = now
			}
			c.noteRenewal(l.Name, renewTime(l), at)
		},
		UpdateFunc: func(old, obj any) {
			l, ok := obj.(*coordinationv1.Lease)
			if !ok || l.Namespace != leaseNamespace {
				return
			}
			c.noteRenewal(l.Name, renewTime(l), c.cc.Now())
		},
	})
}

func (c *Controller) noteRenewal(node string, renew, seen time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.renewals[node]
	if renew.After(r.renew) {
		c.renewals[node] = renewal{renew: renew, seen: seen}
	}
}

type renewal struct {
	renew time.Time // the Lease's renewTime
	seen  time.Time // when this controller saw it
}

// leaseRenewing: the node's Lease was renewed since shortly before the
// gossip failure and recently.
func (c *Controller) leaseRenewing(node string, gs GossipState, now time.Time) bool {
	c.mu.Lock()
	r := c.renewals[node]
	c.mu.Unlock()
	if r.seen.IsZero() || !r.seen.After(gs.Since.Add(-c.opts.GossipLeaseSlack)) {
		return false
	}
	stale := 10 * time.Second
	if l, err := c.leases.Leases(leaseNamespace).Get(node); err == nil && l.Spec.LeaseDurationSeconds != nil {
		stale = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second / 2
	}
	return now.Sub(r.seen) <= stale
}

// firstReport reports whether gossip verdict gs is reported for the
// first time for this node (one log line or event per verdict), and
// notes it as reported.
func (c *Controller) firstReport(h *health, gs GossipState) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := !h.gossipReported.Equal(gs.Since)
	h.gossipReported = gs.Since
	return first
}

// checkGossip applies the combination rule to one node; it returns the
// node as it now is.
func (c *Controller) checkGossip(ctx context.Context, n *corev1.Node, gs GossipState, h *health, now time.Time) *corev1.Node {
	if !gs.Down {
		return n
	}
	if gs.Stopping {
		if c.firstReport(h, gs) {
			c.log.Info("node's gossip member stopped on purpose: its Lease decides", "node", n.Name, "gossip", gs.Status)
		}
		return n
	}
	if c.leaseRenewing(n.Name, gs, now) {
		if c.firstReport(h, gs) {
			c.log.Warn("gossip reports node down but its Lease is renewed: not marked", "node", n.Name, "gossip", gs.Status)
			c.recorder.Eventf(n, corev1.EventTypeWarning, "GossipMemberDown",
				"gossip: node %s since %s, but its Lease is still renewed: not marked unreachable", gs.Status, gs.Since.UTC().Format(time.RFC3339))
		}
		return n
	}
	if r := readyCondition(n); r != nil && r.Status == corev1.ConditionUnknown {
		return n
	}
	c.mu.Lock()
	marked := h.gossipMarked.Equal(gs.Since)
	c.mu.Unlock()
	if marked {
		// Marked once for this verdict and the kubelet has reported Ready
		// since: it is alive, whatever gossip says. Not marked again (no
		// flapping while gossip catches up).
		if c.firstReport(h, gs) {
			c.log.Warn("gossip reports node down but its kubelet reported Ready: not marked again", "node", n.Name, "gossip", gs.Status)
			c.recorder.Eventf(n, corev1.EventTypeWarning, "GossipMemberDown",
				"gossip: node %s since %s, but its kubelet reported Ready: not marked unreachable again", gs.Status, gs.Since.UTC().Format(time.RFC3339))
		}
		return n
	}
	out, err := c.markUnknownWith(ctx, n, now, "NodeStatusUnknown", fmt.Sprintf("gossip: node %s", gs.Status))
	if err != nil {
		c.log.Debug("mark node unknown (gossip)", "node", n.Name, "err", err)
		return n
	}
	c.mu.Lock()
	h.gossipMarked = gs.Since
	c.mu.Unlock()
	c.log.Info("gossip reports node down and its Lease is not renewed: marked Unknown", "node", n.Name, "gossip", gs.Status,
		"detected", gs.Since.UTC().Format(time.RFC3339Nano))
	return out
}
