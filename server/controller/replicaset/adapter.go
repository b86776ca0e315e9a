package replicaset

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-io/skiff/server/controller"
)

func replicaSetAdapter(cc *controller.Context) *adapter {
	inf := cc.Informers.Apps().V1().ReplicaSets()
	lister := inf.Lister()
	return &adapter{
		gvk:      appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		informer: inf.Informer(),
		get: func(ns, name string) (*appsv1.ReplicaSet, error) {
			return lister.ReplicaSets(ns).Get(name)
		},
		list:     func(ns string) ([]*appsv1.ReplicaSet, error) { return lister.ReplicaSets(ns).List(labels.Everything()) },
		original: func(rs *appsv1.ReplicaSet) runtime.Object { return rs },
		fresh: func(ctx context.Context, ns, name string) (metav1.Object, error) {
			return cc.Client.AppsV1().ReplicaSets(ns).Get(ctx, name, metav1.GetOptions{})
		},
		updateStatus: func(ctx context.Context, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) error {
			out := rs.DeepCopy()
			out.Status = st
			_, err := cc.Client.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, out, metav1.UpdateOptions{})
			return err
		},
	}
}

func replicationControllerAdapter(cc *controller.Context) *adapter {
	inf := cc.Informers.Core().V1().ReplicationControllers()
	lister := inf.Lister()
	return &adapter{
		gvk:      corev1.SchemeGroupVersion.WithKind("ReplicationController"),
		informer: inf.Informer(),
		get: func(ns, name string) (*appsv1.ReplicaSet, error) {
			rc, err := lister.ReplicationControllers(ns).Get(name)
			if err != nil {
				return nil, err
			}
			return rcToRS(rc), nil
		},
		list: func(ns string) ([]*appsv1.ReplicaSet, error) {
			rcs, err := lister.ReplicationControllers(ns).List(labels.Everything())
			out := make([]*appsv1.ReplicaSet, 0, len(rcs))
			for _, rc := range rcs {
				out = append(out, rcToRS(rc))
			}
			return out, err
		},
		original: func(rs *appsv1.ReplicaSet) runtime.Object {
			if rc, err := lister.ReplicationControllers(rs.Namespace).Get(rs.Name); err == nil {
				return rc
			}
			return rs
		},
		fresh: func(ctx context.Context, ns, name string) (metav1.Object, error) {
			return cc.Client.CoreV1().ReplicationControllers(ns).Get(ctx, name, metav1.GetOptions{})
		},
		updateStatus: func(ctx context.Context, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) error {
			rc, err := lister.ReplicationControllers(rs.Namespace).Get(rs.Name)
			if err != nil {
				return err
			}
			out := rc.DeepCopy()
			out.ResourceVersion = rs.ResourceVersion
			out.Status = rcStatus(st)
			_, err = cc.Client.CoreV1().ReplicationControllers(rs.Namespace).UpdateStatus(ctx, out, metav1.UpdateOptions{})
			return err
		},
	}
}

// rcToRS converts a ReplicationController to the ReplicaSet the
// controller works on (same metadata, so owner references and events
// name the controller).
func rcToRS(rc *corev1.ReplicationController) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{ObjectMeta: *rc.ObjectMeta.DeepCopy()}
	rs.Spec.Replicas = rc.Spec.Replicas
	if rs.Spec.Replicas == nil {
		one := int32(1)
		rs.Spec.Replicas = &one
	}
	rs.Spec.MinReadySeconds = rc.Spec.MinReadySeconds
	if len(rc.Spec.Selector) > 0 {
		rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: rc.Spec.Selector}
	} else {
		rs.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{}}
	}
	if rc.Spec.Template != nil {
		rs.Spec.Template = *rc.Spec.Template.DeepCopy()
	}
	rs.Status = appsv1.ReplicaSetStatus{
		Replicas: rc.Status.Replicas, FullyLabeledReplicas: rc.Status.FullyLabeledReplicas,
		ReadyReplicas: rc.Status.ReadyReplicas, AvailableReplicas: rc.Status.AvailableReplicas,
		ObservedGeneration: rc.Status.ObservedGeneration,
	}
	for _, c := range rc.Status.Conditions {
		rs.Status.Conditions = append(rs.Status.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetConditionType(c.Type), Status: c.Status,
			LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
		})
	}
	return rs
}

func rcStatus(st appsv1.ReplicaSetStatus) corev1.ReplicationControllerStatus {
	out := corev1.ReplicationControllerStatus{
		Replicas: st.Replicas, FullyLabeledReplicas: st.FullyLabeledReplicas,
		ReadyReplicas: st.ReadyReplicas, AvailableReplicas: st.AvailableReplicas,
		ObservedGeneration: st.ObservedGeneration,
	}
	for _, c := range st.Conditions {
		out.Conditions = append(out.Conditions, corev1.ReplicationControllerCondition{
			Type: corev1.ReplicationControllerConditionType(c.Type), Status: c.Status,
			LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
		})
	}
	return out
}
