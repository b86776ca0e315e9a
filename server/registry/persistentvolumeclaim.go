package registry

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// PersistentVolumeClaims ask for storage; the PV controller binds them
// (server/controller/volume) and the kubelet mounts the bound volume.
func persistentVolumeClaimKind() *Kind {
	return &Kind{
		GVK:        corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaim"),
		Resource:   "persistentvolumeclaims",
		Namespaced: true,
		ShortNames: []string{"pvc"},
		HasStatus:  true,
		newObject:  func() runtime.Object { return &corev1.PersistentVolumeClaim{} },
		newList:    func() runtime.Object { return &corev1.PersistentVolumeClaimList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.PersistentVolumeClaim).Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
		},
		defaults: func(obj runtime.Object) {
			pvc := obj.(*corev1.PersistentVolumeClaim)
			if pvc.Spec.VolumeMode == nil {
				m := corev1.PersistentVolumeFilesystem
				pvc.Spec.VolumeMode = &m
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			return validatePVCSpec(&obj.(*corev1.PersistentVolumeClaim).Spec, field.NewPath("spec"))
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validatePVCUpdate(obj.(*corev1.PersistentVolumeClaim), old.(*corev1.PersistentVolumeClaim))
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			pvc := obj.(*corev1.PersistentVolumeClaim)
			phases := []string{string(corev1.ClaimPending), string(corev1.ClaimBound), string(corev1.ClaimLost)}
			var errs field.ErrorList
			if pvc.Status.Phase != "" && !contains(phases, string(pvc.Status.Phase)) {
				errs = append(errs, field.NotSupported(field.NewPath("status", "phase"), pvc.Status.Phase, phases))
			}
			return append(errs, validateResourceList(pvc.Status.Capacity, field.NewPath("status", "capacity"))...)
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Status", "string", "phase represents the current phase of PersistentVolumeClaim.", 0),
			col("Volume", "string", "volumeName is the binding reference to the PersistentVolume backing this claim.", 0),
			col("Capacity", "string", "capacity represents the actual resources of the underlying volume.", 0),
			col("Access Modes", "string", "accessModes contains the desired access modes the volume should have.", 0),
			col("StorageClass", "string", "storageClassName is the name of the StorageClass required by the claim.", 0),
			col("VolumeAttributesClass", "string", "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim.", 0),
			ageColumn,
			col("VolumeMode", "string", "volumeMode defines what type of volume is required by the claim.", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			pvc := obj.(*corev1.PersistentVolumeClaim)
			capacity, modes := "", ""
			if pvc.Spec.VolumeName != "" {
				modes = AccessModesString(pvc.Status.AccessModes)
				if q, ok := pvc.Status.Capacity[corev1.ResourceStorage]; ok {
					capacity = q.String()
				}
			}
			class := ""
			if pvc.Spec.StorageClassName != nil {
				class = *pvc.Spec.StorageClassName
			}
			vac := "<unset>"
			if pvc.Spec.VolumeAttributesClassName != nil {
				vac = *pvc.Spec.VolumeAttributesClassName
			}
			phase := string(pvc.Status.Phase)
			if pvc.DeletionTimestamp != nil {
				phase = "Terminating"
			}
			return []any{pvc.Name, phase, pvc.Spec.VolumeName, capacity, modes, class, vac,
				Age(pvc.CreationTimestamp, now), volumeModeString(pvc.Spec.VolumeMode)}
		},
	}
}

// validatePVCSpec follows Kubernetes' ValidatePersistentVolumeClaimSpec.
func validatePVCSpec(s *corev1.PersistentVolumeClaimSpec, p *field.Path) field.ErrorList {
	errs := validateAccessModes(s.AccessModes, p.Child("accessModes"))
	if s.Selector != nil {
		errs = append(errs, metavalidation.ValidateLabelSelector(s.Selector, metavalidation.LabelSelectorValidationOptions{}, p.Child("selector"))...)
	}
	storage, ok := s.Resources.Requests[corev1.ResourceStorage]
	switch {
	case !ok:
		errs = append(errs, field.Required(p.Child("resources").Key(string(corev1.ResourceStorage)), ""))
	case storage.Sign() <= 0:
		errs = append(errs, field.Invalid(p.Child("resources", "requests").Key(string(corev1.ResourceStorage)), storage.String(), "must be greater than zero"))
	}
	errs = append(errs, validateResourceList(s.Resources.Requests, p.Child("resources", "requests"))...)
	errs = append(errs, validateResourceList(s.Resources.Limits, p.Child("resources", "limits"))...)
	if s.StorageClassName != nil && *s.StorageClassName != "" {
		for _, msg := range validation.NameIsDNSSubdomain(*s.StorageClassName, false) {
			errs = append(errs, field.Invalid(p.Child("storageClassName"), *s.StorageClassName, msg))
		}
	}
	if s.VolumeMode != nil && !contains(supportedVolumeModes, string(*s.VolumeMode)) {
		errs = append(errs, field.NotSupported(p.Child("volumeMode"), *s.VolumeMode, supportedVolumeModes))
	}
	return errs
}

// validatePVCUpdate: the spec is immutable except resources.requests of a
// bound claim (expansion, never below the capacity it has), volumeName
// set once (binding) and storageClassName set once on a claim that had
// none (the default class, assigned retroactively).
func validatePVCUpdate(pvc, old *corev1.PersistentVolumeClaim) field.ErrorList {
	var errs field.ErrorList
	sp := field.NewPath("spec")
	n, o := pvc.Spec.DeepCopy(), old.Spec.DeepCopy()
	if o.VolumeName == "" {
		o.VolumeName = n.VolumeName
	}
	if o.StorageClassName == nil && n.StorageClassName != nil && old.Spec.VolumeName == "" {
		o.StorageClassName = n.StorageClassName
	}
	if old.Status.Phase == corev1.ClaimBound {
		o.Resources.Requests = n.Resources.Requests
	}
	o.VolumeAttributesClassName = n.VolumeAttributesClassName
	if !apiequality.Semantic.DeepEqual(n, o) {
		errs = append(errs, field.Forbidden(sp, "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"))
	}
	// A request may go down again only to recover from a failed
	// expansion: never to the capacity the volume has or below.
	req, prevReq := pvc.Spec.Resources.Requests[corev1.ResourceStorage], old.Spec.Resources.Requests[corev1.ResourceStorage]
	if old.Status.Phase == corev1.ClaimBound && req.Cmp(prevReq) < 0 {
		if capq, ok := old.Status.Capacity[corev1.ResourceStorage]; !ok || req.Cmp(capq) <= 0 {
			errs = append(errs, field.Forbidden(sp.Child("resources", "requests", "storage"), "field can not be less than status.capacity"))
		}
	}
	return errs
}
