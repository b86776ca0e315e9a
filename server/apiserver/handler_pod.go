package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
)

// maxDisruptedPods is kube-apiserver's bound on a PDB's status.disruptedPods.
const maxDisruptedPods = 2000

// successStatus is the Status kube-apiserver answers a binding or an
// eviction with.
func successStatus(code int) *metav1.Status {
	return &metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusSuccess,
		Code:     int32(code),
	}
}

// handleBinding serves POST pods/<name>/binding: it assigns an unbound pod
// to a node. The pod is read and updated with UID and resourceVersion
// preconditions, so two schedulers cannot both bind it: the loser gets 409.
func (s *APIServer) handleBinding(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	obj, _, err := s.decode.decodeBody(req.r, body, corev1.SchemeGroupVersion.WithKind("Binding"), &corev1.Binding{})
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	b := obj.(*corev1.Binding)
	if b.Name != "" && b.Name != req.info.Name {
		s.writeError(req.w, req.r, badRequest("the name of the object (%s) does not match the name on the URL (%s)", b.Name, req.info.Name))
		return
	}
	if b.Namespace != "" && b.Namespace != req.namespace() {
		s.writeError(req.w, req.r, badRequest("the namespace of the provided object does not match the namespace sent on the request"))
		return
	}
	var errs field.ErrorList
	if b.Target.Kind != "" && b.Target.Kind != "Node" {
		errs = append(errs, field.NotSupported(field.NewPath("target", "kind"), b.Target.Kind, []string{"Node", "<empty>"}))
	}
	if b.Target.Name == "" {
		errs = append(errs, field.Required(field.NewPath("target", "name"), ""))
	}
	if len(errs) > 0 {
		s.writeError(req.w, req.r, apierrors.NewInvalid(schema.GroupKind{Kind: "Binding"}, req.info.Name, errs))
		return
	}
	dry, err := dryRun(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	if err := s.bindPod(req.r.Context(), req, b, dry); err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	writeJSON(req.w, http.StatusCreated, successStatus(http.StatusCreated))
}

func (s *APIServer) bindPod(ctx context.Context, req *request, b *corev1.Binding, dry bool) error {
	gr := req.kind.GroupResource()
	// The first attempt reads the local state, sparing the scheduler's
	// thousands of bindings a linearizable read each: the write's
	// precondition on the pod's UID and resourceVersion refuses it if
	// that state was stale. A refusal is only answered from a
	// linearizable read (as is a dry run).
	linear := dry
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		snap, err := s.store.Read(ctx, linear, 0)
		if err != nil {
			return storeError(err)
		}
		cur, pod, err := s.bindable(snap, req, b)
		if err != nil {
			if !linear {
				linear = true
				continue
			}
			return err
		}
		pod.Spec.NodeName = b.Target.Name
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodCondition(&pod.Status, corev1.PodCondition{
			Type: corev1.PodScheduled, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(s.now().UTC().Truncate(time.Second)),
		})
		if dry {
			return nil
		}
		data, err := req.kind.Encode(pod)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		_, err = s.propose(ctx, fsm.Mutation{Op: fsm.OpUpdate, Key: cur.Key, Object: data,
			Preconditions: &fsm.Preconditions{UID: cur.UID, ResourceVersion: cur.ModifyIndex}})
		if isConflict(err) {
			// Changed since we read it: read again, and refuse if another
			// binding won.
			linear = true
			continue
		}
		return err
	}
	return apierrors.NewConflict(gr, req.info.Name, errModified)
}

// bindable returns (a copy of) the pod a binding names, or why it cannot
// be bound: missing, another UID, being deleted, or already on a node.
func (s *APIServer) bindable(snap *state.Snapshot, req *request, b *corev1.Binding) (*state.Object, *corev1.Pod, error) {
	gr := req.kind.GroupResource()
	cur := snap.Get(req.kind.Key(req.namespace(), req.info.Name))
	if cur == nil {
		return nil, nil, apierrors.NewNotFound(gr, req.info.Name)
	}
	// The scheduler's informer has this version of the pod decoded
	// already, as a rule.
	pod, ok := s.pods.copyOf(cur, s.now())
	if !ok {
		obj, err := req.kind.Decode(cur)
		if err != nil {
			return nil, nil, apierrors.NewInternalError(err)
		}
		pod = obj.(*corev1.Pod)
	}
	if b.UID != "" && b.UID != pod.UID {
		return nil, nil, apierrors.NewConflict(gr, pod.Name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", b.UID, pod.UID))
	}
	if pod.DeletionTimestamp != nil {
		return nil, nil, apierrors.NewConflict(gr, pod.Name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", pod.Name))
	}
	if pod.Spec.NodeName != "" {
		return nil, nil, apierrors.NewConflict(gr, pod.Name, fmt.Errorf("pod %s is already assigned to node %q", pod.Name, pod.Spec.NodeName))
	}
	return cur, pod, nil
}

// setPodCondition replaces the condition of c's type, or appends it.
func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			if st.Conditions[i].Status == c.Status {
				c.LastTransitionTime = st.Conditions[i].LastTransitionTime
			}
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// handleEviction serves POST pods/<name>/eviction: the pod is deleted
// unless a PodDisruptionBudget forbids it (429 TooManyRequests, as
// kube-apiserver). A budget whose status the disruption controller has not
// computed allows no disruption.
func (s *APIServer) handleEviction(req *request) {
	body, err := s.readBody(req.r)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	obj, _, err := s.decode.decodeBody(req.r, body, policyv1.SchemeGroupVersion.WithKind("Eviction"), &policyv1.Eviction{})
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	ev := obj.(*policyv1.Eviction)
	if ev.Name != "" && ev.Name != req.info.Name {
		s.writeError(req.w, req.r, badRequest("name in URL does not match name in Eviction object"))
		return
	}
	opts := ev.DeleteOptions
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	if dr := req.r.URL.Query()["dryRun"]; len(dr) > 0 {
		opts.DryRun = dr
	}
	if err := validateDryRun(opts.DryRun); err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	if err := s.evict(req.r.Context(), req, opts); err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	writeJSON(req.w, http.StatusCreated, successStatus(http.StatusCreated))
}

func (s *APIServer) evict(ctx context.Context, req *request, opts *metav1.DeleteOptions) error {
	pdbKind, ok := s.reg.Lookup(policyv1.GroupName, "v1", "poddisruptionbudgets")
	if !ok {
		pdbKind = nil
	}
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		snap, err := s.store.Read(ctx, true, 0)
		if err != nil {
			return storeError(err)
		}
		cur, obj, err := getObject(snap, req.kind, req.namespace(), req.info.Name)
		if err != nil {
			return err
		}
		if err := checkDeletePreconditions(req.kind, cur, opts); err != nil {
			return err
		}
		pod := obj.(*corev1.Pod)
		if pdbKind != nil && !canIgnorePDB(pod) {
			err := s.takeDisruption(ctx, snap, pdbKind, pod, len(opts.DryRun) > 0)
			if isConflict(err) {
				continue
			}
			if err != nil {
				return err
			}
		}
		if len(opts.DryRun) == 0 {
			// The pod learns why it goes (DisruptionTarget), as
			// kube-apiserver's eviction does: a Job's pod failure policy
			// can match it.
			if snap, cur, obj, err = s.markEvicted(ctx, req, snap, cur, pod); isConflict(err) {
				continue
			} else if err != nil {
				return err
			}
		}
		_, _, err = s.deleteObject(ctx, snap, req.kind, cur, obj, opts)
		if isConflict(err) {
			continue
		}
		return err
	}
	return apierrors.NewConflict(req.kind.GroupResource(), req.info.Name, errModified)
}

// markEvicted gives the pod the DisruptionTarget condition (reason
// EvictionByEvictionAPI) and returns it as stored, with the snapshot read.
func (s *APIServer) markEvicted(ctx context.Context, req *request, snap *state.Snapshot, cur *state.Object, pod *corev1.Pod) (*state.Snapshot, *state.Object, runtime.Object, error) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == "EvictionByEvictionAPI" {
			return snap, cur, pod, nil
		}
	}
	cp := pod.DeepCopy()
	cond := corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "EvictionByEvictionAPI",
		Message: "Eviction API: evicting", LastTransitionTime: metav1.NewTime(s.now().UTC().Truncate(time.Second))}
	found := false
	for i := range cp.Status.Conditions {
		if cp.Status.Conditions[i].Type == corev1.DisruptionTarget {
			cp.Status.Conditions[i], found = cond, true
		}
	}
	if !found {
		cp.Status.Conditions = append(cp.Status.Conditions, cond)
	}
	data, err := req.kind.Encode(cp)
	if err != nil {
		return nil, nil, nil, apierrors.NewInternalError(err)
	}
	if _, err := s.propose(ctx, fsm.Mutation{Op: fsm.OpUpdate, Key: cur.Key, Object: data,
		Preconditions: &fsm.Preconditions{UID: cur.UID, ResourceVersion: cur.ModifyIndex}}); err != nil {
		return nil, nil, nil, err
	}
	if snap, err = s.store.Read(ctx, true, 0); err != nil {
		return nil, nil, nil, storeError(err)
	}
	cur, obj, err := getObject(snap, req.kind, req.namespace(), req.info.Name)
	return snap, cur, obj, err
}

// canIgnorePDB: a pod that is terminal, pending or already being deleted
// can be evicted whatever the budgets say.
func canIgnorePDB(pod *corev1.Pod) bool {
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed, corev1.PodPending:
		return true
	}
	return pod.DeletionTimestamp != nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// takeDisruption checks the pod's PodDisruptionBudget and records the
// eviction in its status (disruptionsAllowed-1, disruptedPods), as
// kube-apiserver's eviction REST does.
func (s *APIServer) takeDisruption(ctx context.Context, snap *state.Snapshot, pdbKind *registry.Kind, pod *corev1.Pod, dry bool) error {
	var (
		matches []*policyv1.PodDisruptionBudget
		keys    []*state.Object
		derr    error
	)
	snap.List(pdbKind.StorageResource(), pod.Namespace, "", func(o *state.Object) bool {
		obj, err := pdbKind.Decode(o)
		if err != nil {
			derr = err
			return false
		}
		pdb := obj.(*policyv1.PodDisruptionBudget)
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			return true
		}
		matches = append(matches, pdb)
		keys = append(keys, o)
		return true
	})
	if derr != nil {
		return apierrors.NewInternalError(derr)
	}
	switch len(matches) {
	case 0:
		return nil
	case 1:
	default:
		return apierrors.NewInternalError(fmt.Errorf("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."))
	}
	pdb := matches[0]
	if !podReady(pod) && pdb.Spec.UnhealthyPodEvictionPolicy != nil && *pdb.Spec.UnhealthyPodEvictionPolicy == policyv1.AlwaysAllow {
		return nil
	}
	tooMany := func(msg string) error {
		err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 10)
		err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: policyv1.DisruptionBudgetCause, Message: msg})
		return err
	}
	switch {
	case pdb.Status.ObservedGeneration < pdb.Generation:
		return tooMany(fmt.Sprintf("The disruption budget %s is still being processed by the server.", pdb.Name))
	case pdb.Status.DisruptionsAllowed < 0:
		return apierrors.NewForbidden(policyv1.Resource("poddisruptionbudgets"), pdb.Name, fmt.Errorf("pdb disruptions allowed is negative"))
	case len(pdb.Status.DisruptedPods) > maxDisruptedPods:
		return apierrors.NewForbidden(policyv1.Resource("poddisruptionbudgets"), pdb.Name, fmt.Errorf("DisruptedPods map too big - too many evictions not confirmed by PDB controller"))
	case pdb.Status.DisruptionsAllowed == 0:
		return tooMany(fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", pdb.Name, pdb.Status.DesiredHealthy, pdb.Status.CurrentHealthy))
	}
	if dry {
		return nil
	}
	pdb.Status.DisruptionsAllowed--
	if pdb.Status.DisruptedPods == nil {
		pdb.Status.DisruptedPods = map[string]metav1.Time{}
	}
	pdb.Status.DisruptedPods[pod.Name] = metav1.NewTime(s.now().UTC().Truncate(time.Second))
	data, err := pdbKind.Encode(pdb)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	_, err = s.propose(ctx, fsm.Mutation{Op: fsm.OpUpdate, Key: keys[0].Key, Object: data,
		Preconditions: &fsm.Preconditions{UID: keys[0].UID, ResourceVersion: keys[0].ModifyIndex}})
	return err
}

// handleStreaming answers pods/log, exec, attach and portforward: 404 for
// a missing pod, otherwise 503 until the agent's kubelet serves them.
func (s *APIServer) handleStreaming(req *request) {
	snap, err := s.store.Read(req.r.Context(), false, 0)
	if err != nil {
		s.writeError(req.w, req.r, storeError(err))
		return
	}
	_, obj, err := getObject(snap, req.kind, req.namespace(), req.info.Name)
	if err != nil {
		s.writeError(req.w, req.r, err)
		return
	}
	if err := s.admitConnect(req, obj.(*corev1.Pod)); err != nil { // handler_connect.go
		s.writeError(req.w, req.r, err)
		return
	}
	if s.cfg.KubeletTransport != nil {
		s.proxyToKubelet(req, snap, obj.(*corev1.Pod)) // proxy.go
		return
	}
	s.writeError(req.w, req.r, apierrors.NewServiceUnavailable(fmt.Sprintf(
		"the kubelet is not available yet: pods/%s is served once the Skiff agent streams through the API server", req.info.Subresource)))
}
