package agent

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/agent/localpath"
)

// Eviction-style thresholds for the node's pressure conditions.
const (
	memoryPressureBytes = 100 << 20 // MemoryPressure below 100Mi available
	diskPressurePercent = 10        // DiskPressure below 10% of nodefs available
	pidPressurePercent  = 90        // PIDPressure above 90% of pid_max in use
)

// nodeObject builds the Node the agent registers.
func (a *Agent) nodeObject() *corev1.Node {
	labels := map[string]string{
		"kubernetes.io/hostname":  a.cfg.NodeName,
		"kubernetes.io/os":        runtime.GOOS,
		"kubernetes.io/arch":      runtime.GOARCH,
		"beta.kubernetes.io/os":   runtime.GOOS,
		"beta.kubernetes.io/arch": runtime.GOARCH,
	}
	for k, v := range a.cfg.Labels {
		labels[k] = v
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        a.cfg.NodeName,
			Labels:      labels,
			Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0", localpath.AnnDir: a.cfg.LocalPathDir},
		},
		Status: a.nodeStatus(nil),
	}
}

// nodeStatus is the node's status now; prev (the stored node) keeps the
// conditions' transition times.
func (a *Agent) nodeStatus(prev *corev1.Node) corev1.NodeStatus {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(machineCPUs()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(machineMemory(), resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(int64(a.cfg.MaxPods), resource.DecimalSI),
	}
	fsCap, fsAvail, fsOK := fsStats(a.cfg.DataDir)
	if fsOK {
		capacity[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(fsCap, resource.BinarySI)
	}
	for name, q := range a.cfg.Capacity {
		capacity[name] = q
	}
	allocatable := capacity.DeepCopy()
	// Allocatable keeps back the eviction thresholds, as the kubelet's
	// defaults do (memory.available<100Mi, nodefs.available<10%).
	mem := allocatable[corev1.ResourceMemory]
	mem.Sub(*resource.NewQuantity(memoryPressureBytes, resource.BinarySI))
	allocatable[corev1.ResourceMemory] = mem
	if fsOK {
		allocatable[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(fsCap-fsCap*diskPressurePercent/100, resource.BinarySI)
	}

	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	memAvail, _ := meminfo("MemAvailable")
	procs, pidMax, pidOK := pidStats()
	memPressure := memAvail > 0 && memAvail < memoryPressureBytes
	diskPressure := fsOK && fsAvail*100 < fsCap*diskPressurePercent
	pidPressure := pidOK && procs*100 > pidMax*pidPressurePercent
	cond := func(t corev1.NodeConditionType, bad bool, okReason, okMsg, badReason, badMsg string) corev1.NodeCondition {
		c := corev1.NodeCondition{Type: t, Status: corev1.ConditionFalse, Reason: okReason, Message: okMsg, LastHeartbeatTime: now, LastTransitionTime: now}
		if bad {
			c.Status, c.Reason, c.Message = corev1.ConditionTrue, badReason, badMsg
		}
		if prev != nil {
			for _, p := range prev.Status.Conditions {
				if p.Type == t && p.Status == c.Status {
					c.LastTransitionTime = p.LastTransitionTime
				}
			}
		}
		return c
	}
	ready := cond(corev1.NodeReady, true, "", "", "KubeletReady", "kubelet is posting ready status")
	if a.cfg.Runtime == nil || !a.runtimeHealthy() {
		ready = cond(corev1.NodeReady, false, "KubeletNotReady", "container runtime is down", "", "")
	}
	conditions := []corev1.NodeCondition{
		cond(corev1.NodeMemoryPressure, memPressure, "KubeletHasSufficientMemory", "kubelet has sufficient memory available", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
		cond(corev1.NodeDiskPressure, diskPressure, "KubeletHasNoDiskPressure", "kubelet has no disk pressure", "KubeletHasDiskPressure", "kubelet has disk pressure"),
		cond(corev1.NodePIDPressure, pidPressure, "KubeletHasSufficientPID", "kubelet has sufficient PID available", "KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
		ready,
	}
	if msg, degraded := a.degradedMessage(); degraded {
		conditions = append(conditions, cond(NodeRuntimeDegraded, true, "", "", reasonHostLimits, msg))
	}
	hostname, _ := os.Hostname()
	runtimeVersion := "skiff://" + Version
	if v, ok := a.rawRuntime.(interface{ RuntimeVersion() string }); ok {
		runtimeVersion = v.RuntimeVersion()
	}
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: allocatable,
		Phase:       "",
		Conditions:  conditions,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.cfg.NodeIP},
			{Type: corev1.NodeHostName, Address: hostname},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(a.cfg.KubeletPort)}},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID:               readTrim("/etc/machine-id"),
			SystemUUID:              readTrim("/sys/class/dmi/id/product_uuid"),
			BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
			KernelVersion:           kernelVersion(),
			OSImage:                 osImage(),
			ContainerRuntimeVersion: runtimeVersion,
			KubeletVersion:          Version,
			KubeProxyVersion:        Version,
			OperatingSystem:         runtime.GOOS,
			Architecture:            runtime.GOARCH,
		},
	}
}

// runtimeHealthy: the runtime answers a list call.
func (a *Agent) runtimeHealthy() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := a.cfg.Runtime.ListPodSandbox(ctx, &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"skiff.io/health": "probe"}})
	return err == nil
}

// registerNode creates the Node, or takes over an existing one of the
// same name (a restarted agent), retrying until the API answers.
func (a *Agent) registerNode(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for {
		err := a.tryRegister(ctx)
		if err == nil {
			return nil
		}
		a.log.Warn("register node, retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func (a *Agent) tryRegister(ctx context.Context) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	want := a.nodeObject()
	created, err := nodes.Create(ctx, want, metav1.CreateOptions{})
	if err == nil {
		a.setPodCIDR(created.Spec.PodCIDR)
		// Status is a subresource: set it now.
		return a.updateNodeStatus(ctx, true)
	}
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	cur, err := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	missing := map[string]string{}
	for k, v := range want.Labels {
		if cur.Labels[k] != v {
			missing[k] = v
		}
	}
	meta := map[string]any{}
	if len(missing) > 0 {
		meta["labels"] = missing
	}
	if cur.Annotations[localpath.AnnDir] != a.cfg.LocalPathDir {
		meta["annotations"] = map[string]string{localpath.AnnDir: a.cfg.LocalPathDir}
	}
	if len(meta) > 0 {
		patch, _ := json.Marshal(map[string]any{"metadata": meta})
		if _, err := nodes.Patch(ctx, a.cfg.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return err
		}
	}
	a.setPodCIDR(cur.Spec.PodCIDR)
	return a.updateNodeStatus(ctx, true)
}

// updateNodeStatus patches the Node's status when it changed (or always,
// with force: the heartbeat times move).
func (a *Agent) updateNodeStatus(ctx context.Context, force bool) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	cur, err := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{ResourceVersion: "0"})
	if err != nil {
		return err
	}
	st := a.nodeStatus(cur)
	if !force && statusEquivalent(cur.Status, st) {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	_, err = nodes.Patch(ctx, a.cfg.NodeName, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
	return err
}

// statusEquivalent compares node statuses ignoring heartbeat times.
func statusEquivalent(a, b corev1.NodeStatus) bool {
	strip := func(s corev1.NodeStatus) corev1.NodeStatus {
		s = *s.DeepCopy()
		for i := range s.Conditions {
			s.Conditions[i].LastHeartbeatTime = metav1.Time{}
		}
		// Memory and disk figures move all the time; compare capacity only.
		s.Allocatable = nil
		return s
	}
	return apiequality.Semantic.DeepEqual(strip(a), strip(b))
}

// nodeStatusLoop reports the node's status every NodeStatusInterval when
// it changed, and at least once a minute.
func (a *Agent) nodeStatusLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.NodeStatusInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		force := time.Since(last) > time.Minute
		if err := a.updateNodeStatus(ctx, force); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("update node status", "err", err)
			}
			continue
		}
		if force {
			last = time.Now()
		}
	}
}

// PodCIDR is the node's pod CIDR ("" until the master assigns one).
func (a *Agent) PodCIDR() string {
	if p := a.podCIDR.Load(); p != nil {
		return *p
	}
	return ""
}

// setPodCIDR records the node's podCIDR and hands it to the runtime's
// network setup (CRI UpdateRuntimeConfig).
func (a *Agent) setPodCIDR(cidr string) {
	if cidr == "" || cidr == a.PodCIDR() {
		return
	}
	if u, ok := a.rawRuntime.(interface {
		UpdateRuntimeConfig(ctx context.Context, cfg *runtimeapi.RuntimeConfig) error
	}); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := u.UpdateRuntimeConfig(ctx, &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}); err != nil {
			a.log.Error("runtime refused the pod CIDR", "cidr", cidr, "err", err)
			return
		}
	}
	a.podCIDR.Store(&cidr)
	a.log.Info("pod CIDR assigned", "cidr", cidr)
	a.markCheckpointDirty()
	if a.workers != nil {
		for _, obj := range a.podInformer.GetStore().List() {
			a.workers.trigger(obj.(*corev1.Pod).UID)
		}
	}
}

// nodeWatchLoop watches the agent's own Node for its podCIDR.
func (a *Agent) nodeWatchLoop(ctx context.Context) {
	sel := fields.OneTermEqualSelector("metadata.name", a.cfg.NodeName).String()
	for ctx.Err() == nil {
		w, err := a.cfg.Client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			if n, ok := ev.Object.(*corev1.Node); ok {
				a.setPodCIDR(n.Spec.PodCIDR)
				a.correctUnknown(ctx, n)
			}
		}
		w.Stop()
	}
}

// correctUnknown reports the node's status at once when the node
// lifecycle controller marked it Unknown while this kubelet runs (gossip
// saw it fail during a pause, a restart or a partition).
func (a *Agent) correctUnknown(ctx context.Context, n *corev1.Node) {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionUnknown {
			if err := a.updateNodeStatus(ctx, true); err != nil && ctx.Err() == nil {
				a.log.Warn("report node status after it was marked Unknown", "err", err)
			}
			return
		}
	}
}
