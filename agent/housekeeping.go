package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (a *Agent) housekeepingLoop(ctx context.Context) {
	t := time.NewTicker(a.cfg.HousekeepingPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.housekeeping(ctx)
	}
}

// housekeeping removes what the runtime and the disk hold for pods that
// no longer exist (deleted while the agent was down, or force-deleted):
// their containers, sandboxes, volumes and logs. It runs only after the
// pod informer synced, so a pod it does not know is really gone.
func (a *Agent) housekeeping(ctx context.Context) {
	known := map[types.UID]bool{}
	for _, obj := range a.podInformer.GetStore().List() {
		known[obj.(*corev1.Pod).UID] = true
	}
	sbs, err := a.cfg.Runtime.ListPodSandbox(ctx, nil)
	if err != nil {
		a.log.Warn("housekeeping: list sandboxes", "err", err)
		return
	}
	orphans := map[types.UID]*runtimeapi.PodSandboxMetadata{}
	for _, sb := range sbs {
		uid := types.UID(sb.Labels[labelPodUID])
		if uid == "" || known[uid] || a.workers.has(uid) {
			continue
		}
		orphans[uid] = sb.Metadata
	}
	cs, err := a.cfg.Runtime.ListContainers(ctx, nil)
	if err == nil {
		for _, c := range cs {
			uid := types.UID(c.Labels[labelPodUID])
			if uid != "" && !known[uid] && !a.workers.has(uid) && orphans[uid] == nil {
				orphans[uid] = &runtimeapi.PodSandboxMetadata{Uid: string(uid), Name: c.Labels[labelPodName], Namespace: c.Labels[labelPodNamespace]}
			}
		}
	}
	for uid, md := range orphans {
		a.log.Info("removing orphaned pod", "uid", uid, "pod", md.GetNamespace()+"/"+md.GetName())
		if err := a.removePod(ctx, uid, md.GetNamespace(), md.GetName()); err != nil {
			a.log.Warn("remove orphaned pod", "uid", uid, "err", err)
		}
	}
	// Pod directories and log directories left behind.
	podsDir := filepath.Join(a.cfg.agentDir(), "pods")
	if entries, err := os.ReadDir(podsDir); err == nil {
		for _, e := range entries {
			uid := types.UID(e.Name())
			if known[uid] || a.workers.has(uid) {
				continue
			}
			if err := a.volumes.teardown(uid); err != nil {
				a.log.Warn("remove orphaned pod directory", "uid", uid, "err", err)
			}
		}
	}
	logsDir := filepath.Join(a.cfg.DataDir, "pods")
	if entries, err := os.ReadDir(logsDir); err == nil {
		for _, e := range entries {
			i := strings.LastIndexByte(e.Name(), '_')
			if i < 0 {
				continue
			}
			uid := types.UID(e.Name()[i+1:])
			if known[uid] || a.workers.has(uid) {
				continue
			}
			if err := a.removeLogDir(filepath.Join(logsDir, e.Name())); err != nil {
				a.log.Warn("remove orphaned logs", "dir", e.Name(), "err", err)
			}
		}
	}
}
