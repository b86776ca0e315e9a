package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"

	"github.com/skiff-io/skiff/server/controller/volume"
)

// kube-scheduler's VolumeBinding texts.
const (
	ErrReasonUnboundImmediate = "pod has unbound immediate PersistentVolumeClaims"
	ErrReasonNodeConflict     = "node(s) had volume node affinity conflict"
	ErrReasonBindConflict     = "node(s) didn't find available persistent volumes to bind"
	ErrReasonCannotProvision  = "node(s) cannot provision local-path volumes"
	volumeBindingKey          = "VolumeBinding"
	volumeBindingWait         = 30 * time.Second
	volumeBindingPollInterval = 100 * time.Millisecond
)

// VolumeBinding places pods by their PersistentVolumeClaims, as
// kube-scheduler's plugin of that name: a claim bound to a volume with a
// node affinity (a local volume) pins the pod to that node; an unbound
// claim of a WaitForFirstConsumer class goes to a node where a matching
// volume exists or, for the built-in local-path class, where one can be
// provisioned; an unbound claim of an Immediate class keeps the pod
// unschedulable until the PV controller binds it. PreBind (below) writes
// the chosen node on the waiting claims.
type VolumeBinding struct {
	claims  corelisters.PersistentVolumeClaimLister
	volumes corelisters.PersistentVolumeLister
	classes storagelisters.StorageClassLister
}

func (VolumeBinding) Name() string { return "VolumeBinding" }

type volumeBindingState struct {
	bound   []*corev1.PersistentVolume
	waiting []waitingClaim
}

type waitingClaim struct {
	claim *corev1.PersistentVolumeClaim
	class *storagev1.StorageClass
}

func (s *volumeBindingState) Clone() StateData { return s }

func (v VolumeBinding) PreFilter(_ context.Context, state *CycleState, pod *PodInfo, _ *Snapshot) *Status {
	st := &volumeBindingState{}
	any := false
	for _, vol := range pod.Pod.Spec.Volumes {
		if vol.PersistentVolumeClaim == nil {
			continue
		}
		any = true
		name := vol.PersistentVolumeClaim.ClaimName
		pvc, err := v.claims.PersistentVolumeClaims(pod.Pod.Namespace).Get(name)
		if apierrors.IsNotFound(err) {
			return NewStatus(UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolumeclaim %q not found", name))
		}
		if err != nil {
			return AsStatus(err)
		}
		if pvc.DeletionTimestamp != nil {
			return NewStatus(UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolumeclaim %q is being deleted", name))
		}
		if pvc.Spec.VolumeName != "" {
			pv, err := v.volumes.Get(pvc.Spec.VolumeName)
			if apierrors.IsNotFound(err) {
				return NewStatus(UnschedulableAndUnresolvable, fmt.Sprintf("persistentvolume %q not found", pvc.Spec.VolumeName))
			}
			if err != nil {
				return AsStatus(err)
			}
			st.bound = append(st.bound, pv)
			continue
		}
		class, err := v.classes.Get(volume.ClaimClass(pvc))
		if pvc.Spec.StorageClassName == nil && volume.ClaimClass(pvc) == "" {
			// The PV controller is about to give it the default class.
			all, _ := v.classes.List(labels.Everything())
			class, err = volume.DefaultClass(all), nil
		}
		if err != nil || !volume.WaitForFirstConsumer(class) {
			return NewStatus(UnschedulableAndUnresolvable, ErrReasonUnboundImmediate)
		}
		st.waiting = append(st.waiting, waitingClaim{claim: pvc, class: class})
	}
	if !any {
		return NewStatus(Skip)
	}
	state.Write(volumeBindingKey, st)
	return nil
}

func (v VolumeBinding) Filter(_ context.Context, state *CycleState, _ *PodInfo, node *NodeInfo) *Status {
	d, ok := state.Read(volumeBindingKey)
	if !ok {
		return nil
	}
	st := d.(*volumeBindingState)
	n := node.Node()
	if n == nil {
		return NewStatus(UnschedulableAndUnresolvable, "node not found")
	}
	for _, pv := range st.bound {
		if !volume.NodeMatches(pv, n) {
			return NewStatus(UnschedulableAndUnresolvable, ErrReasonNodeConflict)
		}
	}
	if len(st.waiting) == 0 {
		return nil
	}
	var pvs []*corev1.PersistentVolume
	for _, w := range st.waiting {
		if w.class.Provisioner == volume.LocalPathProvisioner {
			if w.class.Parameters[volume.ParamNodePath] == "" && n.Annotations[volume.AnnLocalPathDir] == "" {
				return NewStatus(UnschedulableAndUnresolvable, ErrReasonCannotProvision)
			}
			if !topologyAllows(w.class, n) {
				return NewStatus(UnschedulableAndUnresolvable, ErrReasonNodeConflict)
			}
			continue
		}
		if pvs == nil {
			pvs, _ = v.volumes.List(labels.Everything())
		}
		if volume.FindVolume(pvs, w.claim, n) == nil {
			return NewStatus(UnschedulableAndUnresolvable, ErrReasonBindConflict)
		}
	}
	return nil
}

// topologyAllows checks a class's allowedTopologies against node.
func topologyAllows(sc *storagev1.StorageClass, n *corev1.Node) bool {
	if len(sc.AllowedTopologies) == 0 {
		return true
	}
	for _, t := range sc.AllowedTopologies {
		ok := true
		for _, e := range t.MatchLabelExpressions {
			found := false
			for _, val := range e.Values {
				if n.Labels[e.Key] == val {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return true
		}
	}
	return false
}

// preBindVolumes writes the selected node on the pod's unbound
// WaitForFirstConsumer claims and waits (up to 30 s) until the PV
// controller has bound them, as kube-scheduler's PreBind does.
func preBindVolumes(ctx context.Context, client kubernetes.Interface, claims corelisters.PersistentVolumeClaimLister, pod *corev1.Pod, node string) error {
	var waiting []types.NamespacedName
	for _, vol := range pod.Spec.Volumes {
		if vol.PersistentVolumeClaim == nil || claims == nil {
			continue
		}
		pvc, err := claims.PersistentVolumeClaims(pod.Namespace).Get(vol.PersistentVolumeClaim.ClaimName)
		if err != nil || pvc.Spec.VolumeName != "" {
			continue
		}
		if pvc.Annotations[volume.AnnSelectedNode] != node {
			// A merge patch: the PV controller may be changing the claim
			// (its finalizer, its class) at the same time.
			patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
				"annotations": map[string]string{volume.AnnSelectedNode: node}}})
			if err != nil {
				return err
			}
			if _, err := client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Patch(ctx, pvc.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
				// Not an API status: the pod is retried, not dropped.
				return fmt.Errorf("select node %s for claim %s: %s", node, pvc.Name, err.Error())
			}
		}
		waiting = append(waiting, types.NamespacedName{Namespace: pvc.Namespace, Name: pvc.Name})
	}
	deadline := time.Now().Add(volumeBindingWait)
	for _, w := range waiting {
		for {
			pvc, err := client.CoreV1().PersistentVolumeClaims(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("claim %s: %s", w.Name, err.Error())
			}
			if pvc.Spec.VolumeName != "" {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("claim %s was not bound in %s", w.Name, volumeBindingWait)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(volumeBindingPollInterval):
			}
		}
	}
	return nil
}
