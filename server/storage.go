package server

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/controller/volume"
)

// DefaultStorageClassName is the built-in local-path class.
const DefaultStorageClassName = "local-path"

// defaultStorageClass is the class of the built-in local-path storage
// (docs/storage.md): the default class, volumes bound where their first
// pod is scheduled, deleted with their claim, expandable.
func defaultStorageClass() *storagev1.StorageClass {
	reclaim := corev1.PersistentVolumeReclaimDelete
	mode := storagev1.VolumeBindingWaitForFirstConsumer
	expand := true
	return &storagev1.StorageClass{
		TypeMeta: metav1.TypeMeta{APIVersion: storagev1.SchemeGroupVersion.String(), Kind: "StorageClass"},
		ObjectMeta: metav1.ObjectMeta{Name: DefaultStorageClassName,
			Annotations: map[string]string{volume.AnnDefaultClass: "true"}},
		Provisioner:          volume.LocalPathProvisioner,
		ReclaimPolicy:        &reclaim,
		VolumeBindingMode:    &mode,
		AllowVolumeExpansion: &expand,
	}
}

// ensureDefaultStorageClass creates the local-path class unless it exists
// (an existing one is left as an operator left it) or
// --disable-local-storage is set.
func (s *Server) ensureDefaultStorageClass(ctx context.Context) error {
	if s.cfg.DisableLocalStorage {
		return nil
	}
	sc := defaultStorageClass()
	now := metav1.Now().Rfc3339Copy()
	return s.ensureObject(ctx, state.Key{Resource: "storage.k8s.io/storageclasses", Name: sc.Name}, &sc.ObjectMeta, now, sc)
}
