package admission

import (
	"context"
	"errors"
	"slices"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/controller/volume"
)

// admitClaim runs kube-apiserver's storage plugins on a new claim:
// DefaultStorageClass (a claim naming no class gets the default one) and
// StorageObjectInUseProtection (the kubernetes.io/pvc-protection
// finalizer from the start).
func (c *Chain) admitClaim(ctx context.Context, a *Attributes) error {
	pvc, ok := a.Object.(*corev1.PersistentVolumeClaim)
	if !ok || a.Operation != Create {
		return nil
	}
	if !slices.Contains(pvc.Finalizers, volume.PVCProtection) {
		pvc.Finalizers = append(pvc.Finalizers, volume.PVCProtection)
	}
	if pvc.Spec.StorageClassName != nil || pvc.Annotations[corev1.BetaStorageClassAnnotation] != "" {
		return nil
	}
	snap, err := c.reader.Read(ctx, false, 0)
	if err != nil {
		return err
	}
	classes, err := c.storageClasses(snap)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	if def := volume.DefaultClass(classes); def != nil {
		name := def.Name
		pvc.Spec.StorageClassName = &name
	}
	return nil
}

// validateClaimResize is kube-apiserver's PersistentVolumeClaimResize: a
// claim may ask for more storage only when it is bound and its class
// allows volume expansion (403 otherwise).
func (c *Chain) validateClaimResize(ctx context.Context, a *Attributes) error {
	pvc, ok := a.Object.(*corev1.PersistentVolumeClaim)
	old, ok2 := a.OldObject.(*corev1.PersistentVolumeClaim)
	if !ok || !ok2 || a.Operation != Update {
		return nil
	}
	want, had := pvc.Spec.Resources.Requests[corev1.ResourceStorage], old.Spec.Resources.Requests[corev1.ResourceStorage]
	if want.Cmp(had) <= 0 {
		return nil
	}
	forbidden := apierrors.NewForbidden(a.Kind.GroupResource(), a.Name,
		errors.New("only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"))
	if old.Spec.VolumeName == "" {
		return forbidden
	}
	snap, err := c.reader.Read(ctx, false, 0)
	if err != nil {
		return err
	}
	classes, err := c.storageClasses(snap)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	for _, sc := range classes {
		if sc.Name == volume.ClaimClass(old) && sc.AllowVolumeExpansion != nil && *sc.AllowVolumeExpansion {
			return nil
		}
	}
	return forbidden
}

func (c *Chain) storageClasses(snap *state.Snapshot) ([]*storagev1.StorageClass, error) {
	kind, ok := c.reg.Lookup(storagev1.GroupName, "v1", "storageclasses")
	if !ok {
		return nil, nil
	}
	var out []*storagev1.StorageClass
	var derr error
	snap.List(kind.StorageResource(), "", "", func(o *state.Object) bool {
		obj, err := kind.Decode(o)
		if err != nil {
			derr = err
			return false
		}
		out = append(out, obj.(*storagev1.StorageClass))
		return true
	})
	return out, derr
}
