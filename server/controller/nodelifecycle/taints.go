package nodelifecycle

import (
	"context"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller"
)

var metaUpdate = metav1.UpdateOptions{}

// zoneState is a zone's health.
type zoneState string

const (
	zoneNormal  zoneState = "Normal"
	zonePartial zoneState = "PartialDisruption"
	zoneFull    zoneState = "FullDisruption"
)

// zoneTainter applies NoExecute taints in one zone at a limited rate.
type zoneTainter struct {
	limiter *rate.Limiter
	paused  bool
	queue   []string
	queued  map[string]bool
}

func newZoneTainter(qps float64) *zoneTainter {
	z := &zoneTainter{limiter: rate.NewLimiter(rate.Limit(qps), 1), queued: map[string]bool{}}
	z.setRate(qps)
	return z
}

func (z *zoneTainter) setRate(qps float64) {
	z.paused = qps <= 0
	if qps > 0 && z.limiter.Limit() != rate.Limit(qps) {
		z.limiter.SetLimit(rate.Limit(qps))
	}
}

func (z *zoneTainter) add(node string) {
	if !z.queued[node] {
		z.queued[node] = true
		z.queue = append(z.queue, node)
	}
}

func (z *zoneTainter) remove(node string) {
	if !z.queued[node] {
		return
	}
	delete(z.queued, node)
	for i, n := range z.queue {
		if n == node {
			z.queue = append(z.queue[:i], z.queue[i+1:]...)
			return
		}
	}
}

func zoneOf(n *corev1.Node) string {
	return n.Labels[corev1.LabelTopologyRegion] + ":" + n.Labels[corev1.LabelTopologyZone]
}

func isReady(n *corev1.Node) bool {
	r := readyCondition(n)
	return r != nil && r.Status == corev1.ConditionTrue
}

// zoneStateOf: all nodes not ready is a full disruption; more than 2 and
// at least the threshold share of them a partial one.
func (c *Controller) zoneStateOf(nodes []*corev1.Node) zoneState {
	notReady := 0
	for _, n := range nodes {
		if !isReady(n) {
			notReady++
		}
	}
	switch {
	case len(nodes) > 0 && notReady == len(nodes):
		return zoneFull
	case notReady > 2 && float64(notReady)/float64(len(nodes)) >= c.opts.UnhealthyZoneThreshold:
		return zonePartial
	}
	return zoneNormal
}

// handleDisruption sets each zone's eviction rate from its state and
// enters or leaves the all-zones-disrupted mode.
func (c *Controller) handleDisruption(ctx context.Context, zoneNodes map[string][]*corev1.Node, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	all := len(zoneNodes) > 0
	states := map[string]zoneState{}
	for zone, nodes := range zoneNodes {
		st := c.zoneStateOf(nodes)
		states[zone] = st
		if st != zoneFull {
			all = false
		}
		if prev := c.zoneStates[zone]; prev != st && prev != "" {
			c.log.Info("zone state changed", "zone", zone, "from", prev, "to", st, "nodes", len(nodes))
		}
	}
	for zone := range c.zones {
		if _, ok := zoneNodes[zone]; !ok {
			delete(c.zones, zone)
		}
	}
	switch {
	case all && !c.allDisrupted:
		c.log.Warn("every zone is fully disrupted: no pod is evicted until nodes report again")
		for _, z := range c.zones {
			z.queue, z.queued = nil, map[string]bool{}
		}
	case !all && c.allDisrupted:
		c.log.Info("leaving full disruption: every node gets a fresh grace period")
		for _, h := range c.health {
			h.probe = now
		}
	}
	c.allDisrupted = all
	c.zoneStates = states
	for zone, nodes := range zoneNodes {
		qps := c.opts.EvictionRate
		if states[zone] == zonePartial {
			qps = 0
			if len(nodes) > c.opts.LargeClusterSizeThreshold {
				qps = c.opts.SecondaryEvictionRate
			}
		}
		z, ok := c.zones[zone]
		if !ok {
			z = newZoneTainter(qps)
			c.zones[zone] = z
		}
		z.setRate(qps)
	}
}

// conditionTaints maps node conditions to their NoSchedule taints.
var conditionTaints = map[corev1.NodeConditionType]string{
	corev1.NodeMemoryPressure:     corev1.TaintNodeMemoryPressure,
	corev1.NodeDiskPressure:       corev1.TaintNodeDiskPressure,
	corev1.NodePIDPressure:        corev1.TaintNodePIDPressure,
	corev1.NodeNetworkUnavailable: corev1.TaintNodeNetworkUnavailable,
}

// reconcileTaints keeps the node's condition taints: NoSchedule ones at
// once; NoExecute ones removed at once, swapped at once (not-ready ⇄
// unreachable), added through the zone's rate-limited queue.
func (c *Controller) reconcileTaints(ctx context.Context, n *corev1.Node) {
	ready := readyCondition(n)
	status := corev1.ConditionUnknown
	if ready != nil {
		status = ready.Status
	}
	wantNoSchedule := map[string]bool{}
	switch status {
	case corev1.ConditionFalse:
		wantNoSchedule[corev1.TaintNodeNotReady] = true
	case corev1.ConditionUnknown:
		wantNoSchedule[corev1.TaintNodeUnreachable] = true
	}
	if n.Spec.Unschedulable {
		wantNoSchedule[corev1.TaintNodeUnschedulable] = true
	}
	for _, cond := range n.Status.Conditions {
		if key, ok := conditionTaints[cond.Type]; ok && cond.Status == corev1.ConditionTrue {
			wantNoSchedule[key] = true
		}
	}
	c.mu.Lock()
	allDisrupted := c.allDisrupted
	z := c.zones[zoneOf(n)]
	c.mu.Unlock()

	var want, other string // NoExecute
	switch status {
	case corev1.ConditionFalse:
		want, other = corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable
	case corev1.ConditionUnknown:
		want, other = corev1.TaintNodeUnreachable, corev1.TaintNodeNotReady
	}
	hasWant, hasOther := hasTaint(n, want, corev1.TaintEffectNoExecute), hasTaint(n, other, corev1.TaintEffectNoExecute)
	if want == "" {
		hasOther = hasTaint(n, corev1.TaintNodeNotReady, corev1.TaintEffectNoExecute) || hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute)
	}
	noExecute := noExecuteChange{}
	switch {
	case want == "" || allDisrupted:
		// Ready, or evictions stopped: no NoExecute condition taint.
		noExecute.removeAll = true
		c.mu.Lock()
		if z != nil {
			z.remove(n.Name)
		}
		c.mu.Unlock()
	case hasOther && !hasWant:
		noExecute.add, noExecute.removeAll = want, true
	case !hasWant:
		c.mu.Lock()
		if z != nil {
			z.add(n.Name)
		}
		c.mu.Unlock()
	}
	c.updateTaints(ctx, n, wantNoSchedule, noExecute)
}

type noExecuteChange struct {
	add       string
	removeAll bool
}

func hasTaint(n *corev1.Node, key string, effect corev1.TaintEffect) bool {
	if key == "" {
		return false
	}
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			return true
		}
	}
	return false
}

// managedNoSchedule are the NoSchedule taints this controller owns.
var managedNoSchedule = map[string]bool{
	corev1.TaintNodeNotReady: true, corev1.TaintNodeUnreachable: true, corev1.TaintNodeUnschedulable: true,
	corev1.TaintNodeMemoryPressure: true, corev1.TaintNodeDiskPressure: true, corev1.TaintNodePIDPressure: true,
	corev1.TaintNodeNetworkUnavailable: true,
}

// updateTaints writes the node's taints when they differ.
func (c *Controller) updateTaints(ctx context.Context, n *corev1.Node, noSchedule map[string]bool, ne noExecuteChange) {
	var out []corev1.Taint
	changed := false
	now := controller.Now(c.cc.Now)
	for _, t := range n.Spec.Taints {
		switch {
		case t.Effect == corev1.TaintEffectNoSchedule && managedNoSchedule[t.Key] && !noSchedule[t.Key]:
			changed = true
			continue
		case t.Effect == corev1.TaintEffectNoExecute && (t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable) && ne.removeAll:
			changed = true
			continue
		}
		out = append(out, t)
	}
	for key := range noSchedule {
		if !hasTaint(n, key, corev1.TaintEffectNoSchedule) {
			out = append(out, corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule, TimeAdded: &now})
			changed = true
		}
	}
	if ne.add != "" {
		out = append(out, corev1.Taint{Key: ne.add, Effect: corev1.TaintEffectNoExecute, TimeAdded: &now})
		changed = true
	}
	if !changed {
		return
	}
	cp := n.DeepCopy()
	cp.Spec.Taints = out
	updated, err := c.cc.Client.CoreV1().Nodes().Update(ctx, cp, metaUpdate)
	if err != nil {
		c.log.Debug("update node taints", "node", n.Name, "err", err)
		return
	}
	c.wrote(updated)
	if ne.add != "" {
		c.log.Info("node tainted NoExecute", "node", n.Name, "taint", ne.add)
	}
}

// processZones applies queued NoExecute taints as the zones' rates allow.
// A queued node that no longer needs the taint (Ready again, tainted
// already, gone) leaves its queue without spending a token: a node that
// was NotReady for a moment while it restarted must not delay the next
// dead node's taint by a whole token interval. When a queue waits for a
// token, a pass is scheduled for when it is due instead of the next
// monitor period (Kubernetes looks at its queues every 100 ms).
func (c *Controller) processZones(ctx context.Context, now time.Time) {
	c.mu.Lock()
	if c.allDisrupted {
		c.mu.Unlock()
		return
	}
	var queued []string
	for _, z := range c.zones {
		queued = append(queued, z.queue...)
	}
	c.mu.Unlock()
	// need: whether each queued node still needs its taint (false when
	// the informer no longer has it). The queues only grow in
	// reconcileTaints, earlier in this same monitor pass, so they hold
	// nothing that is not in this snapshot.
	need := map[string]bool{}
	for _, name := range queued {
		if n, err := c.nodes.Get(name); err == nil {
			need[name] = noExecuteKey(c.fresh(n)) != ""
		}
	}
	var todo []string
	var wait time.Duration
	c.mu.Lock()
	for _, z := range c.zones {
		for !z.paused && len(z.queue) > 0 {
			node := z.queue[0]
			if need[node] {
				tokens := z.limiter.TokensAt(now)
				if tokens < 1 {
					d := max(time.Duration((1-tokens)/float64(z.limiter.Limit())*float64(time.Second)), 50*time.Millisecond)
					if wait == 0 || d < wait {
						wait = d
					}
					break
				}
				z.limiter.AllowN(now, 1)
				todo = append(todo, node)
			}
			// Taken, no longer in need, or gone: off the queue.
			z.queue = z.queue[1:]
			delete(z.queued, node)
		}
	}
	c.mu.Unlock()
	if wait > 0 {
		c.kickAfter(wait)
	}
	for _, name := range todo {
		n, err := c.nodes.Get(name)
		if err != nil {
			continue
		}
		n = c.fresh(n)
		key := noExecuteKey(n)
		if key == "" {
			continue
		}
		c.updateTaints(ctx, n, currentNoSchedule(n), noExecuteChange{add: key, removeAll: true})
	}
}

// noExecuteKey is the NoExecute condition taint a node lacks: not-ready
// (Ready=False) or unreachable (Unknown), or "" when it is Ready or has it.
func noExecuteKey(n *corev1.Node) string {
	if isReady(n) {
		return ""
	}
	key := corev1.TaintNodeUnreachable
	if r := readyCondition(n); r != nil && r.Status == corev1.ConditionFalse {
		key = corev1.TaintNodeNotReady
	}
	if hasTaint(n, key, corev1.TaintEffectNoExecute) {
		return ""
	}
	return key
}

// kickAfter runs a monitor pass after d (one timer, the soonest wins).
func (c *Controller) kickAfter(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	due := time.Now().Add(d)
	if c.kickTimer != nil && !c.kickDue.After(due) && c.kickDue.After(time.Now()) {
		return
	}
	if c.kickTimer != nil {
		c.kickTimer.Stop()
	}
	c.kickDue = due
	c.kickTimer = time.AfterFunc(d, func() {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	})
}

func currentNoSchedule(n *corev1.Node) map[string]bool {
	out := map[string]bool{}
	for _, t := range n.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule && managedNoSchedule[t.Key] {
			out[t.Key] = true
		}
	}
	return out
}
