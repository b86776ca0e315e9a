package registry

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func podKind() *Kind {
	return &Kind{
		GVK:                 corev1.SchemeGroupVersion.WithKind("Pod"),
		Resource:            "pods",
		Namespaced:          true,
		ShortNames:          []string{"po"},
		Categories:          []string{"all"},
		HasStatus:           true,
		HasGeneration:       true,
		ReturnDeletedObject: true,
		newObject:           func() runtime.Object { return &corev1.Pod{} },
		newList:             func() runtime.Object { return &corev1.PodList{} },
		extraSubresources:   podSubresources,
		prepareForCreate: func(obj runtime.Object) {
			pod := obj.(*corev1.Pod)
			pod.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: qosClass(&pod.Spec)}
		},
		defaults: func(obj runtime.Object) {
			pod := obj.(*corev1.Pod)
			defaultPodSpec(&pod.Spec)
			defaultRequestsFromLimits(pod.Spec.InitContainers)
			defaultRequestsFromLimits(pod.Spec.Containers)
		},
		// Ephemeral containers change only through pods/ephemeralcontainers
		// (ephemeral.go).
		prepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Pod).Spec.EphemeralContainers = old.(*corev1.Pod).Spec.EphemeralContainers
		},
		validate: func(obj runtime.Object) field.ErrorList {
			spec := &obj.(*corev1.Pod).Spec
			return append(validatePodSpec(spec, field.NewPath("spec"), nil),
				validateEphemeralContainers(spec, field.NewPath("spec", "ephemeralContainers"))...)
		},
		validateUpdate: func(obj, old runtime.Object) field.ErrorList {
			pod, oldPod := obj.(*corev1.Pod), old.(*corev1.Pod)
			var errs field.ErrorList
			// The common immutable pod fields (kube allows changing only
			// images, activeDeadlineSeconds, tolerations additions and a few
			// more).
			spec := field.NewPath("spec")
			if len(pod.Spec.Containers) != len(oldPod.Spec.Containers) {
				errs = append(errs, field.Forbidden(spec, "pod updates may not add or remove containers"))
			}
			if oldPod.Spec.NodeName != "" {
				errs = append(errs, apivalidation.ValidateImmutableField(pod.Spec.NodeName, oldPod.Spec.NodeName, spec.Child("nodeName"))...)
			}
			errs = append(errs, apivalidation.ValidateImmutableField(pod.Spec.RestartPolicy, oldPod.Spec.RestartPolicy, spec.Child("restartPolicy"))...)
			return errs
		},
		fieldNames: []string{"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
			"spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"},
		fields: func(obj runtime.Object) fields.Set {
			pod := obj.(*corev1.Pod)
			podIPs := ""
			if len(pod.Status.PodIPs) > 0 {
				podIPs = pod.Status.PodIPs[0].IP
			}
			return fields.Set{
				"spec.nodeName":            pod.Spec.NodeName,
				"spec.restartPolicy":       string(pod.Spec.RestartPolicy),
				"spec.schedulerName":       pod.Spec.SchedulerName,
				"spec.serviceAccountName":  pod.Spec.ServiceAccountName,
				"spec.hostNetwork":         fmt.Sprint(pod.Spec.HostNetwork),
				"status.phase":             string(pod.Status.Phase),
				"status.podIP":             pod.Status.PodIP,
				"status.podIPs":            podIPs,
				"status.nominatedNodeName": pod.Status.NominatedNodeName,
			}
		},
		gracefulDelete: podGracefulDelete,
		columns: []metav1.TableColumnDefinition{
			nameColumn,
			col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
			col("Status", "string", "The aggregate status of the containers in this pod.", 0),
			col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
			ageColumn,
			col("IP", "string", "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
			col("Node", "string", "NodeName is a request to schedule this pod onto a specific node.", 1),
			col("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node.", 1),
			col("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness.", 1),
		},
		cells: podCells,
	}
}

// podGracefulDelete: a pod bound to a node and not finished waits for its
// grace period (the kubelet then deletes it with grace 0); others go at once.
func podGracefulDelete(obj runtime.Object, opts *metav1.DeleteOptions) (int64, bool) {
	pod := obj.(*corev1.Pod)
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if opts != nil && opts.GracePeriodSeconds != nil {
		grace = *opts.GracePeriodSeconds
	}
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		grace = 0
	}
	return grace, grace > 0
}

// qosClass computes the pod's QoS class from its containers' resources.
func qosClass(s *corev1.PodSpec) corev1.PodQOSClass {
	any, guaranteed := false, true
	for _, c := range append(append([]corev1.Container(nil), s.InitContainers...), s.Containers...) {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := c.Resources.Requests[r]
			lim, hasLim := c.Resources.Limits[r]
			if hasReq || hasLim {
				any = true
			}
			if !hasLim || (hasReq && req.Cmp(lim) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !any:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

func podCells(obj runtime.Object, now time.Time) []any {
	pod := obj.(*corev1.Pod)
	ready, restarts := 0, int32(0)
	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	var lastRestart time.Time
	for i := len(pod.Status.InitContainerStatuses) - 1; i >= 0; i-- {
		cs := pod.Status.InitContainerStatuses[i]
		restarts += cs.RestartCount
		switch {
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
		case cs.State.Terminated != nil:
			reason = "Init:" + orDefault(cs.State.Terminated.Reason, fmt.Sprintf("ExitCode:%d", cs.State.Terminated.ExitCode))
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + cs.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
	}
	hasRunning := false
	for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
		cs := pod.Status.ContainerStatuses[i]
		restarts += cs.RestartCount
		if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(lastRestart) {
			lastRestart = t.FinishedAt.Time
		}
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			reason = cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
			reason = cs.State.Terminated.Reason
		case cs.State.Terminated != nil:
			reason = fmt.Sprintf("ExitCode:%d", cs.State.Terminated.ExitCode)
		case cs.Ready && cs.State.Running != nil:
			hasRunning = true
			ready++
		}
	}
	if reason == "Completed" && hasRunning {
		reason = "Running"
	}
	if pod.DeletionTimestamp != nil {
		reason = "Terminating"
		if pod.Status.Reason == "NodeLost" {
			reason = "Unknown"
		}
	}
	restartCell := fmt.Sprint(restarts)
	if restarts > 0 && !lastRestart.IsZero() {
		restartCell = fmt.Sprintf("%d (%s ago)", restarts, Age(metav1.NewTime(lastRestart), now))
	}
	gates := "<none>"
	if n := len(pod.Spec.ReadinessGates); n > 0 {
		ok := 0
		for _, g := range pod.Spec.ReadinessGates {
			for _, c := range pod.Status.Conditions {
				if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
					ok++
				}
			}
		}
		gates = fmt.Sprintf("%d/%d", ok, n)
	}
	return []any{
		pod.Name,
		fmt.Sprintf("%d/%d", ready, len(pod.Spec.Containers)),
		reason,
		restartCell,
		Age(pod.CreationTimestamp, now),
		orNone(pod.Status.PodIP),
		orNone(pod.Spec.NodeName),
		orNone(pod.Status.NominatedNodeName),
		gates,
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// defaultRequestsFromLimits sets a container's missing requests to its
// limits, as Kubernetes defaults pods (not pod templates): a container
// with a limit and no request requests its limit.
func defaultRequestsFromLimits(cs []corev1.Container) {
	for i := range cs {
		r := &cs[i].Resources
		for name, q := range r.Limits {
			if _, ok := r.Requests[name]; ok {
				continue
			}
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			r.Requests[name] = q.DeepCopy()
		}
	}
}
