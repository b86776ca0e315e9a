package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// checkpointVersion is the format of the pod checkpoint (STYLE habit 16).
// Version 1: {"version":1,"nodeName":...,"podCIDR":...,"pods":[Pod...]}.
const checkpointVersion = 1

// podCheckpoint is what the agent keeps on disk of the pods bound to its
// node, so that it starts them again after a restart or a reboot while no
// master answers (node autonomy, docs/agent.md).
type podCheckpoint struct {
	Version  int    `json:"version"`
	NodeName string `json:"nodeName"`
	// PodCIDR is the node's pod CIDR, which sandboxes need.
	PodCIDR string `json:"podCIDR,omitempty"`
	// Pods are the pods bound to the node: metadata, spec and phase (a
	// finished pod is not run again).
	Pods []*corev1.Pod `json:"pods"`
}

// checkpointPath is <data-dir>/agent/checkpoint/pods.json.
func (c *Config) checkpointPath() string {
	return filepath.Join(c.agentDir(), "checkpoint", "pods.json")
}

// loadCheckpoint reads the checkpoint (nil, nil when there is none).
func (a *Agent) loadCheckpoint() (*podCheckpoint, error) {
	return readCheckpoint(a.cfg.checkpointPath(), a.cfg.NodeName)
}

func readCheckpoint(path, node string) (*podCheckpoint, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pod checkpoint: %w", err)
	}
	var cp podCheckpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, fmt.Errorf("pod checkpoint %s: %w", path, err)
	}
	if cp.Version != checkpointVersion {
		return nil, fmt.Errorf("pod checkpoint %s: format version %d, this agent reads %d", path, cp.Version, checkpointVersion)
	}
	if cp.NodeName != node {
		return nil, fmt.Errorf("pod checkpoint %s is of node %q, not %q", path, cp.NodeName, node)
	}
	return &cp, nil
}

// checkpointPod is the part of pod the checkpoint keeps: what changes on
// every status update (resourceVersion, status but the phase, managed
// fields) is left out, so that the file is written when the pod set or a
// spec changes, not on every heartbeat of a probe.
func checkpointPod(pod *corev1.Pod) *corev1.Pod {
	p := &corev1.Pod{TypeMeta: pod.TypeMeta, ObjectMeta: *pod.ObjectMeta.DeepCopy(), Spec: *pod.Spec.DeepCopy()}
	p.ResourceVersion = ""
	p.ManagedFields = nil
	p.Status.Phase = pod.Status.Phase
	p.Status.StartTime = pod.Status.StartTime.DeepCopy()
	return p
}

// encodeCheckpoint is the checkpoint of pods, sorted by UID so that the
// same set encodes to the same bytes.
func encodeCheckpoint(node, podCIDR string, pods []*corev1.Pod) ([]byte, error) {
	cp := podCheckpoint{Version: checkpointVersion, NodeName: node, PodCIDR: podCIDR, Pods: make([]*corev1.Pod, 0, len(pods))}
	for _, p := range pods {
		cp.Pods = append(cp.Pods, checkpointPod(p))
	}
	sort.Slice(cp.Pods, func(i, j int) bool { return cp.Pods[i].UID < cp.Pods[j].UID })
	return json.Marshal(cp)
}

// checkpointLoop writes the checkpoint whenever the pods bound to the node
// or the pod CIDR changed (at most every 200ms), from the informer's
// store: it starts after the first list, so that a partial view never
// replaces the last full one.
func (a *Agent) checkpointLoop(ctx context.Context) {
	var last []byte
	if b, err := os.ReadFile(a.cfg.checkpointPath()); err == nil {
		last = b
	}
	for {
		var pods []*corev1.Pod
		for _, obj := range a.podInformer.GetStore().List() {
			if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName == a.cfg.NodeName && !isMirrorPod(p) {
				pods = append(pods, p)
			}
		}
		b, err := encodeCheckpoint(a.cfg.NodeName, a.PodCIDR(), pods)
		switch {
		case err != nil:
			a.log.Error("encode the pod checkpoint", "err", err)
		case !bytes.Equal(b, last):
			if err := writeFileAtomic(a.cfg.checkpointPath(), b, 0o600); err != nil {
				a.log.Warn("write the pod checkpoint", "err", err)
			} else {
				last = b
				a.log.Debug("pod checkpoint written", "pods", len(pods))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-a.checkpointDirty:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// markCheckpointDirty asks checkpointLoop to write the checkpoint again.
func (a *Agent) markCheckpointDirty() {
	select {
	case a.checkpointDirty <- struct{}{}:
	default:
	}
}

// restoreCheckpoint starts a worker for every pod of the checkpoint (the
// runtime adopts what still runs, and starts again what a reboot ended),
// before any master answered. It returns the pods, which reconcile
// checks against the API once the informer synced.
func (a *Agent) restoreCheckpoint() map[types.UID]*corev1.Pod {
	cp, err := a.loadCheckpoint()
	if err != nil {
		// The API's list will tell what to run; the node is not autonomous
		// until the next checkpoint is written.
		a.log.Error("pod checkpoint not used", "err", err)
		return nil
	}
	if cp == nil {
		return nil
	}
	if cp.PodCIDR != "" {
		a.setPodCIDR(cp.PodCIDR)
	}
	out := make(map[types.UID]*corev1.Pod, len(cp.Pods))
	for _, p := range cp.Pods {
		if p.Spec.NodeName != a.cfg.NodeName || p.UID == "" {
			continue
		}
		out[p.UID] = p
		a.workers.update(p)
	}
	a.log.Info("pods started from the checkpoint", "pods", len(out), "podCIDR", cp.PodCIDR)
	return out
}

// reconcileCheckpoint runs once the pod informer synced: the API's state
// wins, so a checkpointed pod the API no longer has (deleted while the
// agent could not see it) is killed and removed. Pods the API has were
// handed to their workers (same UID: the same worker) by the informer.
func (a *Agent) reconcileCheckpoint(restored map[types.UID]*corev1.Pod) {
	if len(restored) == 0 {
		return
	}
	known := map[types.UID]bool{}
	for _, obj := range a.podInformer.GetStore().List() {
		known[obj.(*corev1.Pod).UID] = true
	}
	for uid, p := range restored {
		if !known[uid] {
			a.log.Info("checkpointed pod is gone from the API: stopping it", "pod", p.Namespace+"/"+p.Name, "uid", uid)
			a.workers.remove(p)
		}
	}
}

// writeFileAtomic writes data to path through a synced temporary file and
// a rename, so that a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()      // already failing; the first error is the one returned
			_ = os.Remove(tmp) // ours and incomplete
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
