package volume

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// syncVolume keeps a volume's phase (Available, Bound, Released), its
// pv-protection finalizer and its reclaim.
func (c *Controller) syncVolume(ctx context.Context, name string) error {
	pv, err := c.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pv.DeletionTimestamp != nil {
		if !slices.Contains(pv.Finalizers, PVProtection) || pv.Status.Phase == corev1.VolumeBound && c.claimOf(pv) != nil {
			return nil
		}
		p := pv.DeepCopy()
		p.Finalizers = slices.DeleteFunc(p.Finalizers, func(f string) bool { return f == PVProtection })
		_, err := c.cc.Client.CoreV1().PersistentVolumes().Update(ctx, p, metav1.UpdateOptions{})
		return ignoreGone(err)
	}
	if !slices.Contains(pv.Finalizers, PVProtection) {
		p := pv.DeepCopy()
		p.Finalizers = append(p.Finalizers, PVProtection)
		_, err := c.cc.Client.CoreV1().PersistentVolumes().Update(ctx, p, metav1.UpdateOptions{})
		return ignoreGone(err)
	}
	ref := pv.Spec.ClaimRef
	switch {
	case ref == nil:
		return c.volumePhase(ctx, pv, corev1.VolumeAvailable, "")
	case ref.UID == "":
		// Pre-bound by an operator to a claim that may not exist yet.
		return c.volumePhase(ctx, pv, corev1.VolumeAvailable, "")
	}
	if claim := c.claimOf(pv); claim != nil {
		if claim.Spec.VolumeName == pv.Name {
			return c.volumePhase(ctx, pv, corev1.VolumeBound, "")
		}
		return nil // binding in progress: the claim's sync finishes it
	}
	// The claim is gone from the cache: ask the API before releasing (a
	// released Delete volume loses its data).
	live, err := c.cc.Client.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	switch {
	case err == nil && live.UID == ref.UID:
		return fmt.Errorf("claim %s/%s of volume %s exists but is not in the cache yet", ref.Namespace, ref.Name, pv.Name)
	case err != nil && !apierrors.IsNotFound(err):
		return err
	}
	if pv.Status.Phase != corev1.VolumeReleased && pv.Status.Phase != corev1.VolumeFailed {
		if err := c.volumePhase(ctx, pv, corev1.VolumeReleased, ""); err != nil {
			return err
		}
	}
	switch Reclaim(pv) {
	case ReclaimUnsupported:
		msg := fmt.Sprintf("no volume plugin can %s volume %s; only %s volumes are deleted by Skiff", pv.Spec.PersistentVolumeReclaimPolicy, pv.Name, LocalPathProvisioner)
		c.event(pv, corev1.EventTypeWarning, "VolumeFailedDelete", msg)
		return c.volumePhase(ctx, pv, corev1.VolumeFailed, msg)
	case ReclaimByAgent:
		// The node's agent removes the directory and deletes the volume.
	}
	return nil
}

// claimOf returns the claim bound to pv (same UID), or nil.
func (c *Controller) claimOf(pv *corev1.PersistentVolume) *corev1.PersistentVolumeClaim {
	ref := pv.Spec.ClaimRef
	if ref == nil {
		return nil
	}
	pvc, err := c.claims.PersistentVolumeClaims(ref.Namespace).Get(ref.Name)
	if err != nil || (ref.UID != "" && pvc.UID != ref.UID) {
		return nil
	}
	return pvc
}

func (c *Controller) volumePhase(ctx context.Context, pv *corev1.PersistentVolume, phase corev1.PersistentVolumePhase, msg string) error {
	if pv.Status.Phase == phase && pv.Status.Message == msg {
		return nil
	}
	p := pv.DeepCopy()
	p.Status.Phase, p.Status.Message = phase, msg
	now := metav1.Now()
	p.Status.LastPhaseTransitionTime = &now
	_, err := c.cc.Client.CoreV1().PersistentVolumes().UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return ignoreGone(err)
}
