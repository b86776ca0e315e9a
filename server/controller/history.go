package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// History keeps the ControllerRevisions of a DaemonSet or StatefulSet, in
// the form kubectl reads (`rollout history|undo`): data is the strategic
// merge patch {"spec":{"template":{…,"$patch":"replace"}}}, the name
// <owner>-<hash>, the label controller-revision-hash.
type History struct {
	Client   kubernetes.Interface
	Informer cache.SharedIndexInformer // controllerrevisions, indexed by IndexControllerUID
}

// RevisionPatch is a revision's data for a pod template.
func RevisionPatch(tmpl *corev1.PodTemplateSpec) ([]byte, error) {
	raw, err := json.Marshal(tmpl)
	if err != nil {
		return nil, err
	}
	var t map[string]any
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, err
	}
	t["$patch"] = "replace"
	return json.Marshal(map[string]any{"spec": map[string]any{"template": t}})
}

// TemplateOf decodes the pod template of a revision's data.
func TemplateOf(rev *appsv1.ControllerRevision) (*corev1.PodTemplateSpec, error) {
	var d struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(rev.Data.Raw, &d); err != nil {
		return nil, err
	}
	return &d.Spec.Template, nil
}

// RevisionHash hashes revision data and a collision count.
func RevisionHash(data []byte, collisionCount *int32) string {
	h := fnv.New32a()
	_, _ = h.Write(data)
	if collisionCount != nil {
		_, _ = fmt.Fprintf(h, "/%d", *collisionCount)
	}
	return rand.SafeEncodeString(strconv.FormatInt(int64(h.Sum32()), 10))
}

// Revisions returns owner's revisions, oldest revision first.
func (h *History) Revisions(owner metav1.Object) []*appsv1.ControllerRevision {
	revs := ByIndex[*appsv1.ControllerRevision](h.Informer, IndexControllerUID, string(owner.GetUID()))
	sort.Slice(revs, func(i, j int) bool {
		if revs[i].Revision != revs[j].Revision {
			return revs[i].Revision < revs[j].Revision
		}
		return revs[i].Name < revs[j].Name
	})
	return revs
}

// Ensure returns the revision of tmpl: an existing one with the same
// data (raised to the newest revision number if older, as after a
// rollback), or a new one. collisionCount is raised when another
// template holds the hash's name.
func (h *History) Ensure(ctx context.Context, owner metav1.Object, gvk schema.GroupVersionKind, labels map[string]string,
	tmpl *corev1.PodTemplateSpec, collisionCount *int32, revs []*appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	data, err := RevisionPatch(tmpl)
	if err != nil {
		return nil, err
	}
	var maxRev int64
	for _, r := range revs {
		maxRev = max(maxRev, r.Revision)
	}
	for _, r := range revs {
		if equalData(r.Data.Raw, data) {
			if r.Revision == maxRev {
				return r, nil
			}
			cp := r.DeepCopy()
			cp.Revision = maxRev + 1
			return h.Client.AppsV1().ControllerRevisions(cp.Namespace).Update(ctx, cp, metav1.UpdateOptions{})
		}
	}
	hash := RevisionHash(data, collisionCount)
	lbls := map[string]string{}
	for k, v := range labels {
		lbls[k] = v
	}
	lbls[appsv1.ControllerRevisionHashLabelKey] = hash
	rev := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name: owner.GetName() + "-" + hash, Namespace: owner.GetNamespace(), Labels: lbls,
			OwnerReferences: []metav1.OwnerReference{OwnerRef(owner, gvk)},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: maxRev + 1,
	}
	out, err := h.Client.AppsV1().ControllerRevisions(owner.GetNamespace()).Create(ctx, rev, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, gerr := h.Client.AppsV1().ControllerRevisions(owner.GetNamespace()).Get(ctx, rev.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, gerr
		}
		if ref := metav1.GetControllerOf(got); ref != nil && ref.UID == owner.GetUID() && equalData(got.Data.Raw, data) {
			return got, nil
		}
		return nil, &CollisionError{Name: rev.Name}
	}
	return out, err
}

// CollisionError: a revision of another template has the name: the owner
// must raise its collision count.
type CollisionError struct{ Name string }

func (e *CollisionError) Error() string {
	return "controller revision " + e.Name + " exists with other data (hash collision)"
}

func equalData(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return apiequality.Semantic.DeepEqual(x, y)
}

// Truncate deletes the oldest revisions beyond limit that no live pod
// uses (by hash) and that are not in keep.
func (h *History) Truncate(ctx context.Context, revs []*appsv1.ControllerRevision, limit int32, liveHashes map[string]bool, keep ...string) error {
	var old []*appsv1.ControllerRevision
	for _, r := range revs {
		if liveHashes[r.Labels[appsv1.ControllerRevisionHashLabelKey]] {
			continue
		}
		skip := false
		for _, k := range keep {
			if r.Name == k {
				skip = true
			}
		}
		if !skip {
			old = append(old, r)
		}
	}
	for i := 0; i < len(old)-int(limit); i++ {
		err := h.Client.AppsV1().ControllerRevisions(old[i].Namespace).Delete(ctx, old[i].Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}
