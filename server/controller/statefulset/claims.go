package statefulset

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/controller"
)

// claimName is the name of ordinal ord's claim from template tmpl:
// <template>-<set>-<ordinal>, as Kubernetes names it.
func claimName(set *appsv1.StatefulSet, tmpl *corev1.PersistentVolumeClaim, ord int) string {
	return fmt.Sprintf("%s-%s-%d", tmpl.Name, set.Name, ord)
}

// ensureClaims creates the claims of ordinal ord that do not exist (they
// outlive the pod, so a replacement pod finds its data) and points the
// pod's volumes of the same names at them. With
// persistentVolumeClaimRetentionPolicy.whenDeleted: Delete the set owns
// its claims, so the garbage collector deletes them with the set.
func (c *Controller) ensureClaims(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod, ord int) error {
	for i := range set.Spec.VolumeClaimTemplates {
		tmpl := &set.Spec.VolumeClaimTemplates[i]
		name := claimName(set, tmpl, ord)
		_, err := c.cc.Client.CoreV1().PersistentVolumeClaims(set.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			pvc := &corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: set.Namespace,
					Labels: map[string]string{}, Annotations: tmpl.Annotations},
				Spec: *tmpl.Spec.DeepCopy(),
			}
			for k, v := range tmpl.Labels {
				pvc.Labels[k] = v
			}
			if set.Spec.Selector != nil {
				for k, v := range set.Spec.Selector.MatchLabels {
					pvc.Labels[k] = v
				}
			}
			if rp := set.Spec.PersistentVolumeClaimRetentionPolicy; rp != nil && rp.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
				ref := controller.OwnerRef(set, stsGVK)
				ref.Controller = nil
				pvc.OwnerReferences = []metav1.OwnerReference{ref}
			}
			_, err = c.cc.Client.CoreV1().PersistentVolumeClaims(set.Namespace).Create(ctx, pvc, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				c.recorder.Eventf(set, corev1.EventTypeWarning, "FailedCreate", "create Claim %s for Pod %s in StatefulSet %s failed error: %v", name, p.Name, set.Name, err)
				return err
			}
			if err == nil {
				c.recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulCreate", "create Claim %s Pod %s in StatefulSet %s success", name, p.Name, set.Name)
			}
		} else if err != nil {
			return err
		}
		src := corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}
		found := false
		for j := range p.Spec.Volumes {
			if p.Spec.Volumes[j].Name == tmpl.Name {
				p.Spec.Volumes[j].VolumeSource, found = src, true
			}
		}
		if !found {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: tmpl.Name, VolumeSource: src})
		}
	}
	return nil
}

// deleteScaledClaims deletes the claims of a pod removed by a scale-down
// when persistentVolumeClaimRetentionPolicy.whenScaled is Delete (the
// pvc-protection finalizer keeps them until the pod is gone).
func (c *Controller) deleteScaledClaims(ctx context.Context, set *appsv1.StatefulSet, p *corev1.Pod) error {
	rp := set.Spec.PersistentVolumeClaimRetentionPolicy
	if rp == nil || rp.WhenScaled != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		return nil
	}
	ord, ok := ordinalOf(set, p)
	if !ok {
		return nil
	}
	for i := range set.Spec.VolumeClaimTemplates {
		name := claimName(set, &set.Spec.VolumeClaimTemplates[i], ord)
		err := c.cc.Client.CoreV1().PersistentVolumeClaims(set.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		if err == nil {
			c.recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulDelete", "delete Claim %s in StatefulSet %s successful", name, set.Name)
		}
	}
	return nil
}
