package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
)

// OwnerRef returns the controller owner reference to owner.
func OwnerRef(owner metav1.Object, gvk schema.GroupVersionKind) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{
		APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind,
		Name: owner.GetName(), UID: owner.GetUID(),
		Controller: &t, BlockOwnerDeletion: &t,
	}
}

// PodFromTemplate builds a pod from a template, named by generateName
// "<owner>-", owned by ref.
func PodFromTemplate(tmpl *corev1.PodTemplateSpec, owner metav1.Object, ref *metav1.OwnerReference) *corev1.Pod {
	t := tmpl.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   owner.GetNamespace(),
			Labels:      t.Labels,
			Annotations: t.Annotations,
			Finalizers:  t.Finalizers,
		},
		Spec: t.Spec,
	}
	// The API server truncates a long prefix before adding its suffix.
	pod.GenerateName = owner.GetName() + "-"
	if ref != nil {
		pod.OwnerReferences = append(pod.OwnerReferences, *ref)
	}
	return pod
}

// ComputeHash returns a short, stable hash of a pod template and a
// collision count: the value of the pod-template-hash label. The template
// is hashed in its JSON form (map keys sorted), so every master computes
// the same value.
func ComputeHash(tmpl *corev1.PodTemplateSpec, collisionCount *int32) string {
	h := fnv.New32a()
	b, _ := json.Marshal(tmpl) // a PodTemplateSpec always encodes
	_, _ = h.Write(b)
	if collisionCount != nil {
		_, _ = fmt.Fprintf(h, "/%d", *collisionCount)
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// CreatePods creates n pods made by mk in slow-start batches (1, 2, 4, …,
// as Kubernetes does, so that a systematic failure costs few calls), with
// the batches' calls in parallel. It returns the pods created and the
// first error; the caller lowers its expectations by the rest.
func CreatePods(ctx context.Context, client kubernetes.Interface, ns string, n int, mk func(i int) *corev1.Pod) ([]*corev1.Pod, error) {
	var created []*corev1.Pod
	next := 0
	for batch := 1; next < n; batch = min(2*batch, 500) {
		size := min(batch, n-next)
		errs := make([]error, size)
		out := make([]*corev1.Pod, size)
		var wg sync.WaitGroup
		for i := 0; i < size; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				out[i], errs[i] = client.CoreV1().Pods(ns).Create(ctx, mk(next+i), metav1.CreateOptions{})
			}(i)
		}
		wg.Wait()
		next += size
		var first error
		for i, err := range errs {
			if err == nil {
				created = append(created, out[i])
			} else if first == nil {
				first = err
			}
		}
		if first != nil {
			return created, first
		}
	}
	return created, nil
}

// IsNamespaceTerminating reports whether err refuses a create because the
// namespace is being deleted (nothing to retry).
func IsNamespaceTerminating(err error) bool {
	return apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause)
}
