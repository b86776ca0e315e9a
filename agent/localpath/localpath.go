// Package localpath is the node side of Skiff's built-in local-path
// storage (provisioner skiff.io/local-path). The leader's PV controller
// (server/controller/volume) creates each volume as a hostPath
// (DirectoryOrCreate) under the directory this node publishes in its Node
// annotation skiff.io/local-path-dir (or the class's nodePath), pinned to
// this node; the kubelet makes the directory when a pod first mounts it.
// This package removes what the node owns: when a Delete-policy volume of
// this node is Released (its claim deleted), it removes the directory and
// then deletes the PersistentVolume. Retain volumes are left alone.
package localpath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Names shared with the PV controller (server/controller/volume, which the
// agent does not import).
const (
	Provisioner      = "skiff.io/local-path"
	AnnProvisionedBy = "pv.kubernetes.io/provisioned-by"
	AnnSelectedNode  = "volume.kubernetes.io/selected-node"
	// AnnDir is the Node annotation naming the node's local-path directory.
	AnnDir = "skiff.io/local-path-dir"
)

// Reclaimer deletes this node's released local-path volumes.
type Reclaimer struct {
	Client kubernetes.Interface
	Node   string
	Log    *slog.Logger
}

// Run watches PersistentVolumes until ctx ends.
func (r *Reclaimer) Run(ctx context.Context) {
	f := informers.NewSharedInformerFactory(r.Client, 30*time.Second)
	inf := f.Core().V1().PersistentVolumes().Informer()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	defer q.ShutDown()
	add := func(obj any) {
		if pv, ok := obj.(*corev1.PersistentVolume); ok && r.owns(pv) {
			q.Add(pv.Name)
		}
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, o any) { add(o) }}); err != nil {
		r.Log.Error("local-path: add handler", "err", err)
		return
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	go func() {
		<-ctx.Done()
		q.ShutDown()
	}()
	for {
		name, quit := q.Get()
		if quit {
			return
		}
		obj, exists, err := inf.GetStore().GetByKey(name)
		if err == nil && exists {
			err = r.reclaim(ctx, obj.(*corev1.PersistentVolume))
		}
		if err != nil {
			r.Log.Warn("local-path: reclaim failed, retrying", "volume", name, "err", err)
			q.AddRateLimited(name)
		} else {
			q.Forget(name)
		}
		q.Done(name)
	}
}

// owns reports whether pv is a local-path volume of this node.
func (r *Reclaimer) owns(pv *corev1.PersistentVolume) bool {
	return pv.Annotations[AnnProvisionedBy] == Provisioner && pv.Annotations[AnnSelectedNode] == r.Node && pv.Spec.HostPath != nil
}

// ShouldDelete reports whether pv is a released volume whose policy is
// Delete.
func ShouldDelete(pv *corev1.PersistentVolume) bool {
	return pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete &&
		pv.Status.Phase == corev1.VolumeReleased && pv.DeletionTimestamp == nil
}

func (r *Reclaimer) reclaim(ctx context.Context, pv *corev1.PersistentVolume) error {
	if !r.owns(pv) || !ShouldDelete(pv) {
		return nil
	}
	dir := pv.Spec.HostPath.Path
	if err := RemoveDir(dir, pv.Name); err != nil {
		return err
	}
	r.Log.Info("local-path: volume directory removed", "volume", pv.Name, "path", dir)
	err := r.Client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pv.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// RemoveDir removes a volume's directory. It refuses any path that is not
// an absolute, clean path ending in the volume's own name, so a volume
// edited to point elsewhere cannot make the agent remove another tree.
func RemoveDir(dir, volume string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || filepath.Base(dir) != volume || strings.Count(dir, "/") < 2 {
		return fmt.Errorf("refusing to remove %q for volume %s: not <dir>/%s", dir, volume, volume)
	}
	err := os.RemoveAll(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}
