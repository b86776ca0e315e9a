package registry

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// IsDefaultClassAnnotation marks the default StorageClass.
const IsDefaultClassAnnotation = "storageclass.kubernetes.io/is-default-class"

// StorageClasses (storage.k8s.io/v1) name a provisioner and its
// parameters; claims that name a class get volumes from it.
func storageClassKind() *Kind {
	bindingModes := []string{string(storagev1.VolumeBindingImmediate), string(storagev1.VolumeBindingWaitForFirstConsumer)}
	reclaim := []string{string(corev1.PersistentVolumeReclaimDelete), string(corev1.PersistentVolumeReclaimRetain)}
	return &Kind{
		GVK:        storagev1.SchemeGroupVersion.WithKind("StorageClass"),
		Resource:   "storageclasses",
		ShortNames: []string{"sc"},
		newObject:  func() runtime.Object { return &storagev1.StorageClass{} },
		newList:    func() runtime.Object { return &storagev1.StorageClassList{} },
		defaults: func(obj runtime.Object) {
			sc := obj.(*storagev1.StorageClass)
			if sc.ReclaimPolicy == nil {
				p := corev1.PersistentVolumeReclaimDelete
				sc.ReclaimPolicy = &p
			}
			if sc.VolumeBindingMode == nil {
				m := storagev1.VolumeBindingImmediate
				sc.VolumeBindingMode = &m
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			sc := obj.(*storagev1.StorageClass)
			var errs field.ErrorList
			if sc.Provisioner == "" {
				errs = append(errs, field.Required(field.NewPath("provisioner"), ""))
			} else {
				for _, msg := range utilvalidation.IsQualifiedName(sc.Provisioner) {
					errs = append(errs, field.Invalid(field.NewPath("provisioner"), sc.Provisioner, msg))
				}
			}
			size := 0
			for k, v := range sc.Parameters {
				size += len(k) + len(v)
			}
			if len(sc.Parameters) > 512 {
				errs = append(errs, field.TooLong(field.NewPath("parameters"), "", 512))
			} else if size > 256*1024 {
				errs = append(errs, field.TooLong(field.NewPath("parameters"), "", 256*1024))
			}
			if p := sc.ReclaimPolicy; p != nil && !contains(reclaim, string(*p)) {
				errs = append(errs, field.NotSupported(field.NewPath("reclaimPolicy"), *p, reclaim))
			}
			if m := sc.VolumeBindingMode; m == nil {
				errs = append(errs, field.Required(field.NewPath("volumeBindingMode"), ""))
			} else if !contains(bindingModes, string(*m)) {
				errs = append(errs, field.NotSupported(field.NewPath("volumeBindingMode"), *m, bindingModes))
			}
			return errs
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			sc, prev := obj.(*storagev1.StorageClass), old.(*storagev1.StorageClass)
			var errs field.ErrorList
			if !apiequality.Semantic.DeepEqual(sc.Parameters, prev.Parameters) {
				errs = append(errs, field.Forbidden(field.NewPath("parameters"), "updates to parameters are forbidden."))
			}
			if sc.Provisioner != prev.Provisioner {
				errs = append(errs, field.Forbidden(field.NewPath("provisioner"), "updates to provisioner are forbidden."))
			}
			if !apiequality.Semantic.DeepEqual(sc.ReclaimPolicy, prev.ReclaimPolicy) {
				errs = append(errs, field.Forbidden(field.NewPath("reclaimPolicy"), "updates to reclaimPolicy are forbidden."))
			}
			if !apiequality.Semantic.DeepEqual(sc.VolumeBindingMode, prev.VolumeBindingMode) {
				errs = append(errs, field.Forbidden(field.NewPath("volumeBindingMode"), "field is immutable"))
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Provisioner", "string", "provisioner indicates the type of the provisioner.", 0),
			col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.", 0),
			col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.", 0),
			col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand.", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			sc := obj.(*storagev1.StorageClass)
			name := sc.Name
			if sc.Annotations[IsDefaultClassAnnotation] == "true" || sc.Annotations["storageclass.beta.kubernetes.io/is-default-class"] == "true" {
				name += " (default)"
			}
			policy, mode := "Delete", "Immediate"
			if sc.ReclaimPolicy != nil {
				policy = string(*sc.ReclaimPolicy)
			}
			if sc.VolumeBindingMode != nil {
				mode = string(*sc.VolumeBindingMode)
			}
			expand := false
			if sc.AllowVolumeExpansion != nil {
				expand = *sc.AllowVolumeExpansion
			}
			return []any{name, sc.Provisioner, policy, mode, expand, Age(sc.CreationTimestamp, now)}
		},
	}
}
