package registry

import (
	"reflect"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	supportedAccessModes = []string{string(corev1.ReadWriteOnce), string(corev1.ReadOnlyMany),
		string(corev1.ReadWriteMany), string(corev1.ReadWriteOncePod)}
	supportedReclaimPolicies = []string{string(corev1.PersistentVolumeReclaimDelete),
		string(corev1.PersistentVolumeReclaimRecycle), string(corev1.PersistentVolumeReclaimRetain)}
	supportedVolumeModes = []string{string(corev1.PersistentVolumeBlock), string(corev1.PersistentVolumeFilesystem)}
)

// PersistentVolumes are cluster-scoped pieces of storage; the PV controller
// (server/controller/volume) binds them to claims and reclaims them, and
// the kubelet mounts local and hostPath ones.
func persistentVolumeKind() *Kind {
	return &Kind{
		GVK:        corev1.SchemeGroupVersion.WithKind("PersistentVolume"),
		Resource:   "persistentvolumes",
		ShortNames: []string{"pv"},
		HasStatus:  true,
		newObject:  func() runtime.Object { return &corev1.PersistentVolume{} },
		newList:    func() runtime.Object { return &corev1.PersistentVolumeList{} },
		prepareForCreate: func(obj runtime.Object) {
			pv := obj.(*corev1.PersistentVolume)
			pv.Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumePending}
		},
		defaults: func(obj runtime.Object) {
			pv := obj.(*corev1.PersistentVolume)
			if pv.Spec.PersistentVolumeReclaimPolicy == "" {
				pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
			}
			if pv.Spec.VolumeMode == nil {
				m := corev1.PersistentVolumeFilesystem
				pv.Spec.VolumeMode = &m
			}
			if pv.Spec.HostPath != nil && pv.Spec.HostPath.Type == nil {
				t := corev1.HostPathUnset
				pv.Spec.HostPath.Type = &t
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			return validatePVSpec(&obj.(*corev1.PersistentVolume).Spec, field.NewPath("spec"))
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			pv, prev := obj.(*corev1.PersistentVolume), old.(*corev1.PersistentVolume)
			var errs field.ErrorList
			sp := field.NewPath("spec")
			if !apiequality.Semantic.DeepEqual(pv.Spec.PersistentVolumeSource, prev.Spec.PersistentVolumeSource) {
				errs = append(errs, field.Forbidden(sp.Child("persistentvolumesource"), "spec.persistentvolumesource is immutable after creation"))
			}
			if !apiequality.Semantic.DeepEqual(pv.Spec.VolumeMode, prev.Spec.VolumeMode) {
				errs = append(errs, field.Invalid(sp.Child("volumeMode"), pv.Spec.VolumeMode, "field is immutable"))
			}
			if prev.Spec.NodeAffinity != nil && !apiequality.Semantic.DeepEqual(pv.Spec.NodeAffinity, prev.Spec.NodeAffinity) {
				errs = append(errs, field.Invalid(sp.Child("nodeAffinity"), "", "field is immutable"))
			}
			return errs
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			pv := obj.(*corev1.PersistentVolume)
			phases := []string{string(corev1.VolumePending), string(corev1.VolumeAvailable), string(corev1.VolumeBound),
				string(corev1.VolumeReleased), string(corev1.VolumeFailed)}
			if pv.Status.Phase != "" && !contains(phases, string(pv.Status.Phase)) {
				return field.ErrorList{field.NotSupported(field.NewPath("status", "phase"), pv.Status.Phase, phases)}
			}
			return nil
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity.", 0),
			col("Access Modes", "string", "accessModes contains all ways the volume can be mounted.", 0),
			col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.", 0),
			col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim.", 0),
			col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.", 0),
			col("StorageClass", "string", "storageClassName is the name of StorageClass to which this persistent volume belongs.", 0),
			col("VolumeAttributesClass", "string", "Name of VolumeAttributesClass to which this persistent volume belongs.", 0),
			col("Reason", "string", "reason is a brief CamelCase string that describes any failure.", 0),
			ageColumn,
			col("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.", 1),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			pv := obj.(*corev1.PersistentVolume)
			claim := ""
			if pv.Spec.ClaimRef != nil {
				claim = pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name
			}
			capacity := ""
			if q, ok := pv.Spec.Capacity[corev1.ResourceStorage]; ok {
				capacity = q.String()
			}
			vac := "<unset>"
			if pv.Spec.VolumeAttributesClassName != nil {
				vac = *pv.Spec.VolumeAttributesClassName
			}
			return []any{pv.Name, capacity, AccessModesString(pv.Spec.AccessModes), string(pv.Spec.PersistentVolumeReclaimPolicy),
				string(pv.Status.Phase), claim, pv.Spec.StorageClassName, vac, pv.Status.Reason,
				Age(pv.CreationTimestamp, now), volumeModeString(pv.Spec.VolumeMode)}
		},
	}
}

// validatePVSpec follows Kubernetes' ValidatePersistentVolumeSpec for the
// fields Skiff serves.
func validatePVSpec(s *corev1.PersistentVolumeSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateAccessModes(s.AccessModes, p.Child("accessModes"))...)
	if len(s.Capacity) == 0 {
		errs = append(errs, field.Required(p.Child("capacity"), ""))
	}
	for name, q := range s.Capacity {
		if name != corev1.ResourceStorage {
			errs = append(errs, field.NotSupported(p.Child("capacity"), name, []string{string(corev1.ResourceStorage)}))
			continue
		}
		if q.Sign() <= 0 {
			errs = append(errs, field.Invalid(p.Child("capacity").Key(string(name)), q.String(), "must be greater than zero"))
		}
	}
	if r := s.PersistentVolumeReclaimPolicy; r != "" && !contains(supportedReclaimPolicies, string(r)) {
		errs = append(errs, field.NotSupported(p.Child("persistentVolumeReclaimPolicy"), r, supportedReclaimPolicies))
	}
	if s.StorageClassName != "" {
		for _, msg := range validation.NameIsDNSSubdomain(s.StorageClassName, false) {
			errs = append(errs, field.Invalid(p.Child("storageClassName"), s.StorageClassName, msg))
		}
	}
	if s.VolumeMode != nil && !contains(supportedVolumeModes, string(*s.VolumeMode)) {
		errs = append(errs, field.NotSupported(p.Child("volumeMode"), *s.VolumeMode, supportedVolumeModes))
	}
	switch n := countSources(&s.PersistentVolumeSource); {
	case n == 0:
		errs = append(errs, field.Required(p, "must specify a volume type"))
	case n > 1:
		errs = append(errs, field.Forbidden(p, "may not specify more than 1 volume type"))
	}
	if h := s.HostPath; h != nil {
		if h.Path == "" {
			errs = append(errs, field.Required(p.Child("hostPath", "path"), ""))
		} else if !strings.HasPrefix(h.Path, "/") {
			errs = append(errs, field.Invalid(p.Child("hostPath", "path"), h.Path, "must be an absolute path"))
		}
		if s.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimRecycle && h.Path == "/" {
			errs = append(errs, field.Forbidden(p.Child("persistentVolumeReclaimPolicy"), "may not be 'recycle' for a hostPath mount of '/'"))
		}
	}
	if l := s.Local; l != nil {
		if l.Path == "" {
			errs = append(errs, field.Required(p.Child("local", "path"), ""))
		} else if !strings.HasPrefix(l.Path, "/") {
			errs = append(errs, field.Invalid(p.Child("local", "path"), l.Path, "must be an absolute path"))
		}
		if s.NodeAffinity == nil || s.NodeAffinity.Required == nil {
			errs = append(errs, field.Required(p.Child("nodeAffinity"), "Local volume requires node affinity"))
		}
	}
	if na := s.NodeAffinity; na != nil {
		if na.Required == nil {
			errs = append(errs, field.Required(p.Child("nodeAffinity", "required"), "must specify required node constraints"))
		} else if len(na.Required.NodeSelectorTerms) == 0 {
			errs = append(errs, field.Required(p.Child("nodeAffinity", "required", "nodeSelectorTerms"), "must have at least one node selector term"))
		}
	}
	if c := s.ClaimRef; c != nil && c.Name == "" {
		errs = append(errs, field.Required(p.Child("claimRef", "name"), ""))
	}
	return errs
}

// countSources counts the volume sources set in a PersistentVolumeSource
// (each is a pointer field).
func countSources(src *corev1.PersistentVolumeSource) int {
	v := reflect.ValueOf(src).Elem()
	n := 0
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

func validateAccessModes(modes []corev1.PersistentVolumeAccessMode, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(modes) == 0 {
		return field.ErrorList{field.Required(p, "at least 1 access mode is required")}
	}
	for _, m := range modes {
		if !contains(supportedAccessModes, string(m)) {
			errs = append(errs, field.NotSupported(p, m, supportedAccessModes))
		}
		if m == corev1.ReadWriteOncePod && len(modes) > 1 {
			errs = append(errs, field.Forbidden(p, "may not use ReadWriteOncePod with other access modes"))
		}
	}
	return errs
}

// AccessModesString renders access modes as kubectl does ("RWO,ROX").
func AccessModesString(modes []corev1.PersistentVolumeAccessMode) string {
	short := map[corev1.PersistentVolumeAccessMode]string{corev1.ReadWriteOnce: "RWO", corev1.ReadOnlyMany: "ROX",
		corev1.ReadWriteMany: "RWX", corev1.ReadWriteOncePod: "RWOP"}
	var out []string
	seen := map[string]bool{}
	for _, want := range []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadOnlyMany, corev1.ReadWriteMany, corev1.ReadWriteOncePod} {
		for _, m := range modes {
			if m == want && !seen[short[m]] {
				seen[short[m]] = true
				out = append(out, short[m])
			}
		}
	}
	return strings.Join(out, ",")
}

func volumeModeString(m *corev1.PersistentVolumeMode) string {
	if m == nil {
		return "<unset>"
	}
	return string(*m)
}
