package registry

import (
	"fmt"
	"math"
	"strings"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The CSI kinds of storage.k8s.io/v1 are stored and validated as
// kube-apiserver does. Skiff has no CSI: nothing attaches, registers or
// reports capacity from them; they are there for the clients and
// controllers that read and write them (docs/api.md).

// Size limits of kube-apiserver's storage validation.
const (
	maxAttachedVolumeMetadataSize = 256 * (1 << 10)
	maxVolumeErrorMessageSize     = 1024
	csiNodeIDMaxLength            = 256 // the longer limit, which kube-apiserver applies to CSINodes it serves
	csiDriverNameMaxLength        = 63
)

// VolumeAttachments (cluster-scoped, with status) record that a volume
// is to be attached to a node by an external attacher.
func volumeAttachmentKind() *Kind {
	return &Kind{
		GVK:       storagev1.SchemeGroupVersion.WithKind("VolumeAttachment"),
		Resource:  "volumeattachments",
		HasStatus: true,
		newObject: func() runtime.Object { return &storagev1.VolumeAttachment{} },
		newList:   func() runtime.Object { return &storagev1.VolumeAttachmentList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*storagev1.VolumeAttachment).Status = storagev1.VolumeAttachmentStatus{}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			va := obj.(*storagev1.VolumeAttachment)
			errs := validateVolumeAttachmentSpec(&va.Spec, field.NewPath("spec"))
			return append(errs, validateVolumeAttachmentStatus(&va.Status, field.NewPath("status"))...)
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			va, prev := obj.(*storagev1.VolumeAttachment), old.(*storagev1.VolumeAttachment)
			if !apiequality.Semantic.DeepEqual(va.Spec, prev.Spec) {
				return field.ErrorList{field.Invalid(field.NewPath("spec"), va.Spec, "field is immutable")}
			}
			return nil
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			va := obj.(*storagev1.VolumeAttachment)
			return validateVolumeAttachmentStatus(&va.Status, field.NewPath("status"))
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Attacher", "string", storagev1.VolumeAttachmentSpec{}.SwaggerDoc()["attacher"], 0),
			col("PV", "string", storagev1.VolumeAttachmentSource{}.SwaggerDoc()["persistentVolumeName"], 0),
			col("Node", "string", storagev1.VolumeAttachmentSpec{}.SwaggerDoc()["nodeName"], 0),
			col("Attached", "boolean", storagev1.VolumeAttachmentStatus{}.SwaggerDoc()["attached"], 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			va := obj.(*storagev1.VolumeAttachment)
			pv := ""
			if va.Spec.Source.PersistentVolumeName != nil {
				pv = *va.Spec.Source.PersistentVolumeName
			}
			return []any{va.Name, va.Spec.Attacher, pv, va.Spec.NodeName, va.Status.Attached, Age(va.CreationTimestamp, now)}
		},
	}
}

func validateVolumeAttachmentSpec(s *storagev1.VolumeAttachmentSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Attacher == "" {
		errs = append(errs, field.Required(p.Child("attacher"), ""))
	} else {
		errs = append(errs, validateCSIDriverName(s.Attacher, p.Child("attacher"))...)
	}
	sp := p.Child("source")
	switch src := s.Source; {
	case src.InlineVolumeSpec == nil && src.PersistentVolumeName == nil:
		errs = append(errs, field.Required(sp, "must specify exactly one of inlineVolumeSpec and persistentVolumeName"))
	case src.InlineVolumeSpec != nil && src.PersistentVolumeName != nil:
		errs = append(errs, field.Forbidden(sp, "must specify exactly one of inlineVolumeSpec and persistentVolumeName"))
	case src.PersistentVolumeName != nil:
		if *src.PersistentVolumeName == "" {
			errs = append(errs, field.Required(sp.Child("persistentVolumeName"), "must specify non empty persistentVolumeName"))
			break
		}
		for _, msg := range apivalidation.NameIsDNSSubdomain(*src.PersistentVolumeName, false) {
			errs = append(errs, field.Invalid(sp.Child("persistentVolumeName"), *src.PersistentVolumeName, msg))
		}
	case src.InlineVolumeSpec != nil:
		if src.InlineVolumeSpec.CSI == nil {
			errs = append(errs, field.Required(sp.Child("inlineVolumeSpec", "csi"), "must specify a CSI volume source"))
		}
	}
	for _, msg := range apivalidation.NameIsDNSSubdomain(s.NodeName, false) {
		errs = append(errs, field.Invalid(p.Child("nodeName"), s.NodeName, msg))
	}
	return errs
}

func validateVolumeAttachmentStatus(s *storagev1.VolumeAttachmentStatus, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	size := 0
	for k, v := range s.AttachmentMetadata {
		size += len(k) + len(v)
	}
	if size > maxAttachedVolumeMetadataSize {
		errs = append(errs, field.TooLong(p.Child("attachmentMetadata"), "", maxAttachedVolumeMetadataSize))
	}
	for name, e := range map[string]*storagev1.VolumeError{"attachError": s.AttachError, "detachError": s.DetachError} {
		if e == nil {
			continue
		}
		if len(e.Message) > maxVolumeErrorMessageSize {
			errs = append(errs, field.TooLong(p.Child(name, "message"), "", maxVolumeErrorMessageSize))
		}
		if e.ErrorCode != nil && *e.ErrorCode < 0 {
			errs = append(errs, field.Invalid(p.Child(name, "errorCode"), *e.ErrorCode, validation.InclusiveRangeError(0, math.MaxInt32)))
		}
	}
	return errs
}

// validateCSIDriverName checks a CSI driver name (a CSIDriver's name, a
// VolumeAttachment's attacher, a CSINode driver): at most 63 characters,
// a DNS subdomain in lower case.
func validateCSIDriverName(name string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if name == "" {
		errs = append(errs, field.Required(p, ""))
	}
	if len(name) > csiDriverNameMaxLength {
		errs = append(errs, field.TooLong(p, "", csiDriverNameMaxLength))
	}
	for _, msg := range validation.IsDNS1123Subdomain(strings.ToLower(name)) {
		errs = append(errs, field.Invalid(p, name, msg))
	}
	return errs
}

// CSINodes (cluster-scoped, named as their Node) list the CSI drivers
// registered on a node.
func csiNodeKind() *Kind {
	return &Kind{
		GVK:       storagev1.SchemeGroupVersion.WithKind("CSINode"),
		Resource:  "csinodes",
		newObject: func() runtime.Object { return &storagev1.CSINode{} },
		newList:   func() runtime.Object { return &storagev1.CSINodeList{} },
		validate: func(obj runtime.Object) field.ErrorList {
			return validateCSINodeDrivers(obj.(*storagev1.CSINode).Spec.Drivers, field.NewPath("spec", "drivers"))
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			cn, prev := obj.(*storagev1.CSINode), old.(*storagev1.CSINode)
			var errs field.ErrorList
			for _, od := range prev.Spec.Drivers {
				for _, nd := range cn.Spec.Drivers {
					if od.Name != nd.Name {
						continue
					}
					// The allocatable count may change (MutableCSINodeAllocatableCount).
					a, b := od.DeepCopy(), nd.DeepCopy()
					a.Allocatable, b.Allocatable = nil, nil
					errs = append(errs, apivalidation.ValidateImmutableField(b, a, field.NewPath("spec", "drivers"))...)
				}
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Drivers", "integer", "Drivers indicates the number of CSI drivers registered on the node", 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			cn := obj.(*storagev1.CSINode)
			return []any{cn.Name, int64(len(cn.Spec.Drivers)), Age(cn.CreationTimestamp, now)}
		},
	}
}

func validateCSINodeDrivers(drivers []storagev1.CSINodeDriver, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	names := map[string]bool{}
	for i, d := range drivers {
		dp := p.Index(i)
		errs = append(errs, validateCSIDriverName(d.Name, dp.Child("name"))...)
		if d.NodeID == "" {
			errs = append(errs, field.Required(dp.Child("nodeID"), ""))
		}
		if len(d.NodeID) > csiNodeIDMaxLength {
			errs = append(errs, field.Invalid(dp.Child("nodeID"), d.NodeID, fmt.Sprintf("must be %d characters or less", csiNodeIDMaxLength)))
		}
		if a := d.Allocatable; a != nil && a.Count != nil && *a.Count < 0 {
			errs = append(errs, field.Invalid(dp.Child("allocatable", "count"), int64(*a.Count), "must be greater than or equal to 0"))
		}
		if names[d.Name] {
			errs = append(errs, field.Duplicate(dp.Child("name"), d.Name))
		}
		names[d.Name] = true
		keys := map[string]bool{}
		for _, k := range d.TopologyKeys {
			if k == "" {
				errs = append(errs, field.Required(dp, k))
			}
			if keys[k] {
				errs = append(errs, field.Duplicate(dp, k))
			}
			keys[k] = true
			for _, msg := range validation.IsQualifiedName(k) {
				errs = append(errs, field.Invalid(dp, k, msg))
			}
		}
	}
	return errs
}

// CSIDrivers (cluster-scoped, named as the driver) describe a CSI
// driver's needs: attach, pod info on mount, fsGroup policy, tokens.
func csiDriverKind() *Kind {
	return &Kind{
		GVK:       storagev1.SchemeGroupVersion.WithKind("CSIDriver"),
		Resource:  "csidrivers",
		newObject: func() runtime.Object { return &storagev1.CSIDriver{} },
		newList:   func() runtime.Object { return &storagev1.CSIDriverList{} },
		NameFn:    apivalidation.NameIsDNSSubdomain,
		defaults:  defaultCSIDriver,
		validate: func(obj runtime.Object) field.ErrorList {
			return validateCSIDriverSpec(&obj.(*storagev1.CSIDriver).Spec, field.NewPath("spec"))
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			d, prev := obj.(*storagev1.CSIDriver), old.(*storagev1.CSIDriver)
			// kube-apiserver names the attachRequired path "attachedRequired".
			errs := apivalidation.ValidateImmutableField(d.Spec.AttachRequired, prev.Spec.AttachRequired, field.NewPath("spec", "attachedRequired"))
			return append(errs, apivalidation.ValidateImmutableField(d.Spec.VolumeLifecycleModes, prev.Spec.VolumeLifecycleModes, field.NewPath("spec", "volumeLifecycleModes"))...)
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("AttachRequired", "boolean", storagev1.CSIDriverSpec{}.SwaggerDoc()["attachRequired"], 0),
			col("PodInfoOnMount", "boolean", storagev1.CSIDriverSpec{}.SwaggerDoc()["podInfoOnMount"], 0),
			col("StorageCapacity", "boolean", storagev1.CSIDriverSpec{}.SwaggerDoc()["storageCapacity"], 0),
			col("TokenRequests", "string", storagev1.CSIDriverSpec{}.SwaggerDoc()["tokenRequests"], 0),
			col("RequiresRepublish", "boolean", storagev1.CSIDriverSpec{}.SwaggerDoc()["requiresRepublish"], 0),
			col("Modes", "string", storagev1.CSIDriverSpec{}.SwaggerDoc()["volumeLifecycleModes"], 0),
			ageColumn,
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			d := obj.(*storagev1.CSIDriver)
			boolOr := func(b *bool, def bool) bool {
				if b == nil {
					return def
				}
				return *b
			}
			var modes []string
			for _, m := range d.Spec.VolumeLifecycleModes {
				modes = append(modes, string(m))
			}
			tokens := "<unset>"
			if d.Spec.TokenRequests != nil {
				var auds []string
				for _, t := range d.Spec.TokenRequests {
					auds = append(auds, t.Audience)
				}
				tokens = strings.Join(auds, ",")
			}
			return []any{d.Name, boolOr(d.Spec.AttachRequired, true), boolOr(d.Spec.PodInfoOnMount, false),
				boolOr(d.Spec.StorageCapacity, false), tokens, boolOr(d.Spec.RequiresRepublish, false),
				orNone(strings.Join(modes, ",")), Age(d.CreationTimestamp, now)}
		},
	}
}

// defaultCSIDriver fills storage.k8s.io/v1's defaults.
func defaultCSIDriver(obj runtime.Object) {
	s := &obj.(*storagev1.CSIDriver).Spec
	setBool := func(p **bool, v bool) {
		if *p == nil {
			*p = &v
		}
	}
	setBool(&s.AttachRequired, true)
	setBool(&s.PodInfoOnMount, false)
	setBool(&s.StorageCapacity, false)
	setBool(&s.RequiresRepublish, false)
	setBool(&s.SELinuxMount, false)
	if s.FSGroupPolicy == nil {
		p := storagev1.ReadWriteOnceWithFSTypeFSGroupPolicy
		s.FSGroupPolicy = &p
	}
	if len(s.VolumeLifecycleModes) == 0 {
		s.VolumeLifecycleModes = []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent}
	}
}

func validateCSIDriverSpec(s *storagev1.CSIDriverSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	required := []struct {
		v    *bool
		name string
	}{{s.AttachRequired, "attachedRequired"}, {s.PodInfoOnMount, "podInfoOnMount"}, {s.StorageCapacity, "storageCapacity"}, {s.SELinuxMount, "seLinuxMount"}}
	for _, r := range required {
		if r.v == nil {
			errs = append(errs, field.Required(p.Child(r.name), ""))
		}
	}
	policies := []string{string(storagev1.FileFSGroupPolicy), string(storagev1.NoneFSGroupPolicy), string(storagev1.ReadWriteOnceWithFSTypeFSGroupPolicy)}
	if fp := s.FSGroupPolicy; fp != nil && !contains(policies, string(*fp)) {
		errs = append(errs, field.NotSupported(p.Child("fsGroupPolicy"), fp, policies))
	}
	auds := map[string]bool{}
	for i, t := range s.TokenRequests {
		tp := p.Child("tokenRequests").Index(i)
		if auds[t.Audience] {
			errs = append(errs, field.Duplicate(tp.Child("audience"), t.Audience))
			continue
		}
		auds[t.Audience] = true
		if e := t.ExpirationSeconds; e != nil {
			if *e < 600 {
				errs = append(errs, field.Invalid(tp.Child("expirationSeconds"), *e, "may not specify a duration less than 10 minutes"))
			}
			if *e > 1<<32 {
				errs = append(errs, field.Invalid(tp.Child("expirationSeconds"), *e, "may not specify a duration larger than 2^32 seconds"))
			}
		}
	}
	modes := []string{string(storagev1.VolumeLifecyclePersistent), string(storagev1.VolumeLifecycleEphemeral)}
	for _, m := range s.VolumeLifecycleModes {
		if !contains(modes, string(m)) {
			errs = append(errs, field.NotSupported(p.Child("volumeLifecycleModes"), m, modes))
		}
	}
	if n := s.NodeAllocatableUpdatePeriodSeconds; n != nil && *n < 10 {
		errs = append(errs, field.Invalid(p.Child("nodeAllocatableUpdatePeriodSeconds"), *n, "must be greater than or equal to 10 seconds"))
	}
	return errs
}

// CSIStorageCapacities (namespaced) report the capacity a storage class
// has in a topology segment.
func csiStorageCapacityKind() *Kind {
	return &Kind{
		GVK:        storagev1.SchemeGroupVersion.WithKind("CSIStorageCapacity"),
		Resource:   "csistoragecapacities",
		Namespaced: true,
		newObject:  func() runtime.Object { return &storagev1.CSIStorageCapacity{} },
		newList:    func() runtime.Object { return &storagev1.CSIStorageCapacityList{} },
		validate: func(obj runtime.Object) field.ErrorList {
			c := obj.(*storagev1.CSIStorageCapacity)
			errs := metav1validation.ValidateLabelSelector(c.NodeTopology, metav1validation.LabelSelectorValidationOptions{}, field.NewPath("nodeTopology"))
			for _, msg := range apivalidation.NameIsDNSSubdomain(c.StorageClassName, false) {
				errs = append(errs, field.Invalid(field.NewPath("storageClassName"), c.StorageClassName, msg))
			}
			if c.Capacity != nil && c.Capacity.Sign() < 0 {
				errs = append(errs, field.Invalid(field.NewPath("capacity"), c.Capacity.String(), "must be greater than or equal to 0"))
			}
			return errs
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			c, prev := obj.(*storagev1.CSIStorageCapacity), old.(*storagev1.CSIStorageCapacity)
			var errs field.ErrorList
			if !apiequality.Semantic.DeepEqual(c.NodeTopology, prev.NodeTopology) {
				errs = append(errs, field.Invalid(field.NewPath("nodeTopology"), c.NodeTopology, "field is immutable"))
			}
			if c.StorageClassName != prev.StorageClassName {
				errs = append(errs, field.Invalid(field.NewPath("storageClassName"), c.StorageClassName, "field is immutable"))
			}
			return errs
		},
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("StorageClassName", "string", storagev1.CSIStorageCapacity{}.SwaggerDoc()["storageClassName"], 0),
			col("Capacity", "string", storagev1.CSIStorageCapacity{}.SwaggerDoc()["capacity"], 0),
		},
		cells: func(obj runtime.Object, now time.Time) []any {
			c := obj.(*storagev1.CSIStorageCapacity)
			capacity := "<unset>"
			if c.Capacity != nil {
				capacity = c.Capacity.String()
			}
			return []any{c.Name, c.StorageClassName, capacity}
		},
	}
}
