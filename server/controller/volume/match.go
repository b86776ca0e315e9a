package volume

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
)

// Annotations and finalizers, as Kubernetes names them.
const (
	AnnSelectedNode     = "volume.kubernetes.io/selected-node"
	AnnStorageProvision = "volume.kubernetes.io/storage-provisioner"
	AnnBetaProvisioner  = "volume.beta.kubernetes.io/storage-provisioner"
	AnnProvisionedBy    = "pv.kubernetes.io/provisioned-by"
	AnnBindCompleted    = "pv.kubernetes.io/bind-completed"
	AnnBoundByCtrl      = "pv.kubernetes.io/bound-by-controller"
	AnnDefaultClass     = "storageclass.kubernetes.io/is-default-class"
	PVCProtection       = "kubernetes.io/pvc-protection"
	PVProtection        = "kubernetes.io/pv-protection"

	// LocalPathProvisioner is the provisioner name of Skiff's built-in
	// local-path storage (agent/localpath).
	LocalPathProvisioner = "skiff.io/local-path"
	// AnnLocalPathDir is the Node annotation in which an agent publishes
	// the directory under which its local-path volumes are made.
	AnnLocalPathDir = "skiff.io/local-path-dir"
	// ParamNodePath is the StorageClass parameter that sets that directory
	// for the class's volumes on every node.
	ParamNodePath = "nodePath"
)

// ClaimClass returns the class a claim asks for ("" for none).
func ClaimClass(pvc *corev1.PersistentVolumeClaim) string {
	if pvc.Spec.StorageClassName != nil {
		return *pvc.Spec.StorageClassName
	}
	return pvc.Annotations[corev1.BetaStorageClassAnnotation]
}

// IsDefaultClass reports whether sc is annotated as the default class.
func IsDefaultClass(sc *storagev1.StorageClass) bool {
	return sc.Annotations[AnnDefaultClass] == "true" || sc.Annotations["storageclass.beta.kubernetes.io/is-default-class"] == "true"
}

// DefaultClass returns the default class among classes: the newest of the
// annotated ones (as Kubernetes picks when several are), or nil.
func DefaultClass(classes []*storagev1.StorageClass) *storagev1.StorageClass {
	var best *storagev1.StorageClass
	for _, sc := range classes {
		if !IsDefaultClass(sc) {
			continue
		}
		if best == nil || sc.CreationTimestamp.After(best.CreationTimestamp.Time) ||
			(sc.CreationTimestamp.Equal(&best.CreationTimestamp) && sc.Name < best.Name) {
			best = sc
		}
	}
	return best
}

// WaitForFirstConsumer reports whether sc delays binding until a pod is
// scheduled.
func WaitForFirstConsumer(sc *storagev1.StorageClass) bool {
	return sc != nil && sc.VolumeBindingMode != nil && *sc.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer
}

// hasAccessModes reports whether the volume offers every mode the claim
// asks for.
func hasAccessModes(pv *corev1.PersistentVolume, want []corev1.PersistentVolumeAccessMode) bool {
	have := map[corev1.PersistentVolumeAccessMode]bool{}
	for _, m := range pv.Spec.AccessModes {
		have[m] = true
	}
	for _, m := range want {
		if !have[m] {
			return false
		}
	}
	return true
}

func volumeMode(m *corev1.PersistentVolumeMode) corev1.PersistentVolumeMode {
	if m == nil {
		return corev1.PersistentVolumeFilesystem
	}
	return *m
}

// NodeMatches reports whether the volume may be used on node (its
// nodeAffinity; no affinity matches every node).
func NodeMatches(pv *corev1.PersistentVolume, node *corev1.Node) bool {
	if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
		return true
	}
	return SelectorMatches(pv.Spec.NodeAffinity.Required, node)
}

// SelectorMatches reports whether node matches one of the selector's terms
// (matchExpressions on labels, matchFields on metadata.name).
func SelectorMatches(ns *corev1.NodeSelector, node *corev1.Node) bool {
	for _, t := range ns.NodeSelectorTerms {
		if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
			continue
		}
		if requirementsMatch(t.MatchExpressions, node.Labels) &&
			requirementsMatch(t.MatchFields, map[string]string{"metadata.name": node.Name}) {
			return true
		}
	}
	return false
}

func requirementsMatch(reqs []corev1.NodeSelectorRequirement, set map[string]string) bool {
	ops := map[corev1.NodeSelectorOperator]selection.Operator{
		corev1.NodeSelectorOpIn: selection.In, corev1.NodeSelectorOpNotIn: selection.NotIn,
		corev1.NodeSelectorOpExists: selection.Exists, corev1.NodeSelectorOpDoesNotExist: selection.DoesNotExist,
		corev1.NodeSelectorOpGt: selection.GreaterThan, corev1.NodeSelectorOpLt: selection.LessThan,
	}
	for _, r := range reqs {
		op, ok := ops[r.Operator]
		if !ok {
			return false
		}
		req, err := labels.NewRequirement(r.Key, op, r.Values)
		if err != nil || !req.Matches(labels.Set(set)) {
			return false
		}
	}
	return true
}

// Matches reports whether pv can be bound to pvc: not bound to another
// claim, same class, enough capacity, the access modes, volume mode and
// selector the claim asks for, and (when node is not nil) usable on node.
func Matches(pv *corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim, node *corev1.Node) bool {
	if pv.DeletionTimestamp != nil {
		return false
	}
	if ref := pv.Spec.ClaimRef; ref != nil {
		if ref.Name != pvc.Name || (ref.Namespace != "" && ref.Namespace != pvc.Namespace) || (ref.UID != "" && ref.UID != pvc.UID) {
			return false
		}
	} else if pv.Status.Phase != corev1.VolumeAvailable && pv.Status.Phase != corev1.VolumePending && pv.Status.Phase != "" {
		return false
	}
	if pv.Spec.StorageClassName != ClaimClass(pvc) {
		return false
	}
	want := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	have := pv.Spec.Capacity[corev1.ResourceStorage]
	if have.Cmp(want) < 0 {
		return false
	}
	if !hasAccessModes(pv, pvc.Spec.AccessModes) || volumeMode(pv.Spec.VolumeMode) != volumeMode(pvc.Spec.VolumeMode) {
		return false
	}
	if pvc.Spec.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(pvc.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pv.Labels)) {
			return false
		}
	}
	if node != nil && !NodeMatches(pv, node) {
		return false
	}
	return true
}

// FindVolume returns the volume to bind pvc to: one pre-bound to the claim
// if any, otherwise the smallest matching one (by name on ties), or nil.
func FindVolume(pvs []*corev1.PersistentVolume, pvc *corev1.PersistentVolumeClaim, node *corev1.Node) *corev1.PersistentVolume {
	var fits []*corev1.PersistentVolume
	for _, pv := range pvs {
		if !Matches(pv, pvc, node) {
			continue
		}
		if pv.Spec.ClaimRef != nil {
			return pv
		}
		fits = append(fits, pv)
	}
	sort.Slice(fits, func(i, j int) bool {
		a, b := fits[i].Spec.Capacity[corev1.ResourceStorage], fits[j].Spec.Capacity[corev1.ResourceStorage]
		if c := a.Cmp(b); c != 0 {
			return c < 0
		}
		return fits[i].Name < fits[j].Name
	})
	if len(fits) == 0 {
		return nil
	}
	return fits[0]
}

// ReclaimAction is what happens to a released volume.
type ReclaimAction int

// The reclaim actions.
const (
	// ReclaimKeep: Retain; the volume stays Released for an operator.
	ReclaimKeep ReclaimAction = iota
	// ReclaimByAgent: a local-path volume; its node's agent removes the
	// directory and then the PersistentVolume.
	ReclaimByAgent
	// ReclaimUnsupported: Delete or Recycle of a volume no built-in
	// deleter handles; it stays Released with an event.
	ReclaimUnsupported
)

// Reclaim decides what happens to a released volume.
func Reclaim(pv *corev1.PersistentVolume) ReclaimAction {
	switch pv.Spec.PersistentVolumeReclaimPolicy {
	case corev1.PersistentVolumeReclaimDelete:
		if pv.Annotations[AnnProvisionedBy] == LocalPathProvisioner {
			return ReclaimByAgent
		}
		return ReclaimUnsupported
	case corev1.PersistentVolumeReclaimRecycle:
		return ReclaimUnsupported
	}
	return ReclaimKeep
}

// ClaimInUse reports whether a pod that is not finished uses the claim.
func ClaimInUse(pods []*corev1.Pod, pvc *corev1.PersistentVolumeClaim) bool {
	for _, p := range pods {
		if p.Namespace != pvc.Namespace || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == pvc.Name {
				return true
			}
			if v.Ephemeral != nil && p.Name+"-"+v.Name == pvc.Name {
				return true
			}
		}
	}
	return false
}
