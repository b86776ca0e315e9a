package registry

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	pathvalidation "k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Limits of an HPA's behavior, as kube-apiserver validates them.
const (
	hpaMaxPeriodSeconds              = 1800
	hpaMaxStabilizationWindowSeconds = 3600
)

var hpaColumns = []metav1.TableColumnDefinition{
	nameColumn,
	col("Reference", "string", "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.", 0),
	col("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).", 0),
	col("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.", 0),
	col("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.", 0),
	col("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler.", 0),
	ageColumn,
}

// hpaKind is autoscaling/v2 HorizontalPodAutoscaler, the stored version;
// scaleToZero is the HPAScaleToZero feature gate (Registry.SetHPAScaleToZero).
func hpaKind(scaleToZero *atomic.Bool) *Kind {
	return &Kind{
		GVK:        autoscalingv2.SchemeGroupVersion.WithKind("HorizontalPodAutoscaler"),
		Resource:   "horizontalpodautoscalers",
		Namespaced: true,
		ShortNames: []string{"hpa"},
		Categories: []string{"all"},
		HasStatus:  true,
		newObject:  func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
		newList:    func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscalerList{} },
		prepareForCreate: func(obj runtime.Object) {
			obj.(*autoscalingv2.HorizontalPodAutoscaler).Status = autoscalingv2.HorizontalPodAutoscalerStatus{}
		},
		defaults: func(obj runtime.Object) { DefaultHPA(obj.(*autoscalingv2.HorizontalPodAutoscaler)) },
		validate: func(obj runtime.Object) field.ErrorList {
			return ValidateHPASpecWith(&obj.(*autoscalingv2.HorizontalPodAutoscaler).Spec, scaleToZero.Load())
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			return validateHPAStatus(&obj.(*autoscalingv2.HorizontalPodAutoscaler).Status)
		},
		columns: hpaColumns,
		cells: func(obj runtime.Object, now time.Time) []any {
			return hpaCells(obj.(*autoscalingv2.HorizontalPodAutoscaler), now)
		},
	}
}

// hpaV1Kind is autoscaling/v1 HorizontalPodAutoscaler: the same objects,
// converted to and from v2 (hpaconversion.go); defaulting, validation and
// table rows are v2's on the converted object.
func hpaV1Kind(scaleToZero *atomic.Bool) *Kind {
	v2 := func(obj runtime.Object) *autoscalingv2.HorizontalPodAutoscaler {
		return HPAFromV1(obj.(*autoscalingv1.HorizontalPodAutoscaler))
	}
	return &Kind{
		GVK:        autoscalingv1.SchemeGroupVersion.WithKind("HorizontalPodAutoscaler"),
		Resource:   "horizontalpodautoscalers",
		Namespaced: true,
		ShortNames: []string{"hpa"},
		Categories: []string{"all"},
		HasStatus:  true,
		newObject:  func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscaler{} },
		newList:    func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscalerList{} },
		storedAs: &storedVersion{
			gvk:       autoscalingv2.SchemeGroupVersion.WithKind("HorizontalPodAutoscaler"),
			newObject: func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
			fromStored: func(obj runtime.Object) (runtime.Object, error) {
				return HPAToV1(obj.(*autoscalingv2.HorizontalPodAutoscaler))
			},
			toStored: func(obj runtime.Object) (runtime.Object, error) { return v2(obj), nil },
		},
		prepareForUpdate: func(obj, old runtime.Object) {
			// The status kept from old includes what v1 holds in
			// annotations.
			h, o := obj.(*autoscalingv1.HorizontalPodAutoscaler), old.(*autoscalingv1.HorizontalPodAutoscaler)
			for _, a := range []string{hpaCurrentAnnotation, hpaConditionsAnnotation} {
				if v, ok := o.Annotations[a]; ok {
					if h.Annotations == nil {
						h.Annotations = map[string]string{}
					}
					h.Annotations[a] = v
				} else {
					delete(h.Annotations, a)
				}
			}
		},
		prepareForCreate: func(obj runtime.Object) {
			h := obj.(*autoscalingv1.HorizontalPodAutoscaler)
			h.Status = autoscalingv1.HorizontalPodAutoscalerStatus{}
			for _, a := range []string{hpaCurrentAnnotation, hpaConditionsAnnotation} {
				delete(h.Annotations, a)
			}
		},
		defaults: func(obj runtime.Object) {
			if h := obj.(*autoscalingv1.HorizontalPodAutoscaler); h.Spec.MinReplicas == nil {
				one := int32(1)
				h.Spec.MinReplicas = &one
			}
		},
		validate: func(obj runtime.Object) field.ErrorList {
			h := v2(obj)
			DefaultHPA(h)
			return ValidateHPASpecWith(&h.Spec, scaleToZero.Load())
		},
		validateStatus: func(obj runtime.Object) field.ErrorList {
			return validateHPAStatus(&v2(obj).Status)
		},
		columns: hpaColumns,
		cells:   func(obj runtime.Object, now time.Time) []any { return hpaCells(v2(obj), now) },
	}
}

// DefaultHPA fills an HPA's defaults as kube-apiserver does: minReplicas
// 1, a CPU target of 80% without metrics, and every unset field of a
// behavior that is set.
func DefaultHPA(h *autoscalingv2.HorizontalPodAutoscaler) {
	if h.Spec.MinReplicas == nil {
		one := int32(1)
		h.Spec.MinReplicas = &one
	}
	if len(h.Spec.Metrics) == 0 {
		h.Spec.Metrics = []autoscalingv2.MetricSpec{cpuUtilizationMetric(hpaDefaultCPUUtilization)}
	}
	if b := h.Spec.Behavior; b != nil {
		b.ScaleUp = defaultScalingRules(b.ScaleUp, DefaultScaleUpRules())
		b.ScaleDown = defaultScalingRules(b.ScaleDown, DefaultScaleDownRules())
	}
}

// DefaultScaleUpRules is the scale-up behavior of an HPA that sets none:
// no stabilization, at most 4 pods or 100% more every 15 s, whichever is
// more.
func DefaultScaleUpRules() *autoscalingv2.HPAScalingRules {
	window, sel := int32(0), autoscalingv2.MaxChangePolicySelect
	return &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &window, SelectPolicy: &sel, Policies: []autoscalingv2.HPAScalingPolicy{
		{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
		{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
	}}
}

// DefaultScaleDownRules is the scale-down behavior of an HPA that sets
// none: down to any size every 15 s; the stabilization window stays unset
// (the controller's --horizontal-pod-autoscaler-downscale-stabilization).
func DefaultScaleDownRules() *autoscalingv2.HPAScalingRules {
	sel := autoscalingv2.MaxChangePolicySelect
	return &autoscalingv2.HPAScalingRules{SelectPolicy: &sel, Policies: []autoscalingv2.HPAScalingPolicy{
		{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
	}}
}

func defaultScalingRules(from, to *autoscalingv2.HPAScalingRules) *autoscalingv2.HPAScalingRules {
	if from == nil {
		return to
	}
	if from.SelectPolicy != nil {
		to.SelectPolicy = from.SelectPolicy
	}
	if from.StabilizationWindowSeconds != nil {
		to.StabilizationWindowSeconds = from.StabilizationWindowSeconds
	}
	if from.Policies != nil {
		to.Policies = from.Policies
	}
	to.Tolerance = from.Tolerance
	return to
}

// hpaCells is the row kube-apiserver prints for an HPA.
func hpaCells(h *autoscalingv2.HorizontalPodAutoscaler, now time.Time) []any {
	minPods := "<unset>"
	if h.Spec.MinReplicas != nil {
		minPods = fmt.Sprint(*h.Spec.MinReplicas)
	}
	return []any{h.Name, h.Spec.ScaleTargetRef.Kind + "/" + h.Spec.ScaleTargetRef.Name, HPATargets(h.Spec.Metrics, h.Status.CurrentMetrics),
		minPods, int64(h.Spec.MaxReplicas), int64(h.Status.CurrentReplicas), Age(h.CreationTimestamp, now)}
}

// HPATargets renders the TARGETS column: "cpu: 45%/50%" per metric, the
// current value "<unknown>" until the controller has measured it, at most
// two metrics then "+ N more...". Statuses pair with specs by position.
func HPATargets(specs []autoscalingv2.MetricSpec, statuses []autoscalingv2.MetricStatus) string {
	if len(specs) == 0 {
		return "<none>"
	}
	status := func(i int) *autoscalingv2.MetricStatus {
		if i < len(statuses) {
			return &statuses[i]
		}
		return nil
	}
	var list []string
	for i, s := range specs {
		st, cur := status(i), "<unknown>"
		switch s.Type {
		case autoscalingv2.ExternalMetricSourceType, autoscalingv2.ObjectMetricSourceType:
			t, avg := s.External, st != nil && st.External != nil
			var c *autoscalingv2.MetricValueStatus
			if avg {
				c = &st.External.Current
			}
			var target autoscalingv2.MetricTarget
			if t != nil {
				target = t.Target
			}
			if s.Type == autoscalingv2.ObjectMetricSourceType {
				c = nil
				if st != nil && st.Object != nil {
					c = &st.Object.Current
				}
				if s.Object != nil {
					target = s.Object.Target
				}
			}
			if target.AverageValue != nil {
				if c != nil && c.AverageValue != nil {
					cur = c.AverageValue.String()
				}
				list = append(list, fmt.Sprintf("%s/%s (avg)", cur, target.AverageValue.String()))
			} else {
				if c != nil && c.Value != nil {
					cur = c.Value.String()
				}
				list = append(list, fmt.Sprintf("%s/%s", cur, target.Value.String()))
			}
		case autoscalingv2.PodsMetricSourceType:
			if st != nil && st.Pods != nil && st.Pods.Current.AverageValue != nil {
				cur = st.Pods.Current.AverageValue.String()
			}
			target := "<nil>"
			if s.Pods != nil && s.Pods.Target.AverageValue != nil {
				target = s.Pods.Target.AverageValue.String()
			}
			list = append(list, cur+"/"+target)
		case autoscalingv2.ResourceMetricSourceType, autoscalingv2.ContainerResourceMetricSourceType:
			var name corev1.ResourceName
			var target autoscalingv2.MetricTarget
			var c *autoscalingv2.MetricValueStatus
			if s.Resource != nil {
				name, target = s.Resource.Name, s.Resource.Target
				if st != nil && st.Resource != nil {
					c = &st.Resource.Current
				}
			} else if s.ContainerResource != nil {
				name, target = s.ContainerResource.Name, s.ContainerResource.Target
				if st != nil && st.ContainerResource != nil {
					c = &st.ContainerResource.Current
				}
			}
			if target.AverageValue != nil {
				if c != nil && c.AverageValue != nil {
					cur = c.AverageValue.String()
				}
				list = append(list, fmt.Sprintf("%s: %s/%s", name, cur, target.AverageValue.String()))
				continue
			}
			if c != nil && c.AverageUtilization != nil {
				cur = fmt.Sprintf("%d%%", *c.AverageUtilization)
			}
			t := "<auto>"
			if target.AverageUtilization != nil {
				t = fmt.Sprintf("%d%%", *target.AverageUtilization)
			}
			list = append(list, fmt.Sprintf("%s: %s/%s", name, cur, t))
		default:
			list = append(list, "<unknown type>")
		}
	}
	if len(list) > 2 {
		return fmt.Sprintf("%s + %d more...", strings.Join(list[:2], ", "), len(list)-2)
	}
	return strings.Join(list, ", ")
}

// ValidateHPASpec checks an HPA's spec with kube-apiserver's rules
// (nothing in it is immutable), the HPAScaleToZero gate off.
func ValidateHPASpec(s *autoscalingv2.HorizontalPodAutoscalerSpec) field.ErrorList {
	return ValidateHPASpecWith(s, false)
}

// ValidateHPASpecWith is ValidateHPASpec with the HPAScaleToZero feature
// gate given: on, minReplicas may be 0 when at least one metric is an
// Object or External one (pods cannot report from zero replicas), as
// kube-apiserver validates with the gate.
func ValidateHPASpecWith(s *autoscalingv2.HorizontalPodAutoscalerSpec, scaleToZero bool) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("spec")
	lower := int32(1)
	if scaleToZero {
		lower = 0
	}
	if s.MinReplicas != nil && *s.MinReplicas < lower {
		errs = append(errs, field.Invalid(p.Child("minReplicas"), *s.MinReplicas, fmt.Sprintf("must be greater than or equal to %d", lower)))
	}
	if s.MinReplicas != nil && *s.MinReplicas == 0 && scaleToZero && !hasObjectOrExternalMetric(s.Metrics) {
		errs = append(errs, field.Forbidden(p.Child("metrics"), "must specify at least one Object or External metric to support scaling to zero replicas"))
	}
	if s.MaxReplicas < 1 {
		errs = append(errs, field.Invalid(p.Child("maxReplicas"), s.MaxReplicas, "must be greater than 0"))
	}
	if s.MinReplicas != nil && s.MaxReplicas < *s.MinReplicas {
		errs = append(errs, field.Invalid(p.Child("maxReplicas"), s.MaxReplicas, "must be greater than or equal to `minReplicas`"))
	}
	// A ReplicationController is in the core group: its apiVersion "v1"
	// has no group; every other target's must.
	errs = append(errs, validateHPARef(s.ScaleTargetRef, p.Child("scaleTargetRef"), s.ScaleTargetRef.Kind == "ReplicationController")...)
	for i, m := range s.Metrics {
		errs = append(errs, validateMetricSpec(m, p.Child("metrics").Index(i))...)
	}
	if b := s.Behavior; b != nil {
		errs = append(errs, validateScalingRules(b.ScaleUp, p.Child("behavior", "scaleUp"))...)
		errs = append(errs, validateScalingRules(b.ScaleDown, p.Child("behavior", "scaleDown"))...)
	}
	return errs
}

func validateHPARef(r autoscalingv2.CrossVersionObjectReference, p *field.Path, allowCore bool) field.ErrorList {
	var errs field.ErrorList
	for _, f := range []struct{ name, v string }{{"kind", r.Kind}, {"name", r.Name}} {
		if f.v == "" {
			errs = append(errs, field.Required(p.Child(f.name), ""))
			continue
		}
		for _, msg := range pathvalidation.IsValidPathSegmentName(f.v) {
			errs = append(errs, field.Invalid(p.Child(f.name), f.v, msg))
		}
	}
	gv, err := schema.ParseGroupVersion(r.APIVersion)
	if err != nil {
		errs = append(errs, field.Invalid(p.Child("apiVersion"), r.APIVersion, err.Error()))
	} else if gv.Group == "" && !allowCore {
		errs = append(errs, field.Invalid(p.Child("apiVersion"), r.APIVersion, "apiVersion must specify API group"))
	}
	return errs
}

// hasObjectOrExternalMetric says whether a metric does not come from the
// target's pods.
func hasObjectOrExternalMetric(ms []autoscalingv2.MetricSpec) bool {
	for _, m := range ms {
		if m.Type == autoscalingv2.ObjectMetricSourceType || m.Type == autoscalingv2.ExternalMetricSourceType {
			return true
		}
	}
	return false
}

func validateMetricSpec(m autoscalingv2.MetricSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	types := []string{"ContainerResource", "External", "Object", "Pods", "Resource"}
	if m.Type == "" {
		errs = append(errs, field.Required(p.Child("type"), "must specify a metric source type"))
	}
	// The sources set, in kube-apiserver's order: the first is validated,
	// any besides the one the type names is forbidden.
	type source struct {
		field string
		typ   autoscalingv2.MetricSourceType
		set   bool
	}
	sources := []source{
		{"object", autoscalingv2.ObjectMetricSourceType, m.Object != nil},
		{"external", autoscalingv2.ExternalMetricSourceType, m.External != nil},
		{"pods", autoscalingv2.PodsMetricSourceType, m.Pods != nil},
		{"resource", autoscalingv2.ResourceMetricSourceType, m.Resource != nil},
		{"containerResource", autoscalingv2.ContainerResourceMetricSourceType, m.ContainerResource != nil},
	}
	n, expected := 0, ""
	for _, s := range sources {
		if s.typ == m.Type {
			expected = s.field
		}
		if !s.set {
			continue
		}
		n++
		if n > 1 {
			continue
		}
		sp := p.Child(s.field)
		switch s.field {
		case "object":
			o := m.Object
			errs = append(errs, validateHPARef(o.DescribedObject, sp.Child("describedObject"), true)...)
			errs = append(errs, validateMetricID(o.Metric, sp.Child("metric"))...)
			errs = append(errs, validateMetricTarget(o.Target, sp.Child("target"))...)
			if o.Target.Value == nil && o.Target.AverageValue == nil {
				errs = append(errs, field.Required(sp.Child("target", "averageValue"), "must set either a target value or averageValue"))
			}
		case "external":
			e := m.External
			errs = append(errs, validateMetricID(e.Metric, sp.Child("metric"))...)
			errs = append(errs, validateMetricTarget(e.Target, sp.Child("target"))...)
			if e.Target.Value == nil && e.Target.AverageValue == nil {
				errs = append(errs, field.Required(sp.Child("target", "averageValue"), "must set either a target value for metric or a per-pod target"))
			}
			if e.Target.Value != nil && e.Target.AverageValue != nil {
				errs = append(errs, field.Forbidden(sp.Child("target", "value"), "may not set both a target value for metric and a per-pod target"))
			}
		case "pods":
			errs = append(errs, validateMetricID(m.Pods.Metric, sp.Child("metric"))...)
			errs = append(errs, validateMetricTarget(m.Pods.Target, sp.Child("target"))...)
			if m.Pods.Target.AverageValue == nil {
				errs = append(errs, field.Required(sp.Child("target", "averageValue"), "must specify a positive target averageValue"))
			}
		case "resource", "containerResource":
			var name corev1.ResourceName
			var t autoscalingv2.MetricTarget
			if m.Resource != nil {
				name, t = m.Resource.Name, m.Resource.Target
			} else {
				name, t = m.ContainerResource.Name, m.ContainerResource.Target
				if c := m.ContainerResource.Container; c == "" {
					errs = append(errs, field.Required(sp.Child("container"), "must specify a container"))
				} else {
					for _, msg := range utilvalidation.IsDNS1123Label(c) {
						errs = append(errs, field.Invalid(sp.Child("container"), c, msg))
					}
				}
			}
			if name == "" {
				errs = append(errs, field.Required(sp.Child("name"), "must specify a resource name"))
			}
			errs = append(errs, validateMetricTarget(t, sp.Child("target"))...)
			if t.AverageUtilization == nil && t.AverageValue == nil {
				errs = append(errs, field.Required(sp.Child("target", "averageUtilization"), "must set either a target raw value or a target utilization"))
			}
			if t.AverageUtilization != nil && t.AverageValue != nil {
				errs = append(errs, field.Forbidden(sp.Child("target", "averageValue"), "may not set both a target raw value and a target utilization"))
			}
		}
	}
	if expected == "" {
		errs = append(errs, field.NotSupported(p.Child("type"), m.Type, types))
	} else if !slices.ContainsFunc(sources, func(s source) bool { return s.field == expected && s.set }) {
		errs = append(errs, field.Required(p.Child(expected), "must populate information for the given metric source"))
	}
	if n > 1 {
		for _, s := range sources {
			if s.set && s.field != expected {
				errs = append(errs, field.Forbidden(p.Child(s.field), "must populate the given metric source only"))
			}
		}
	}
	return errs
}

func validateMetricTarget(t autoscalingv2.MetricTarget, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if t.Type == "" {
		errs = append(errs, field.Required(p.Child("type"), "must specify a metric target type"))
	}
	if t.Type != autoscalingv2.UtilizationMetricType && t.Type != autoscalingv2.ValueMetricType && t.Type != autoscalingv2.AverageValueMetricType {
		errs = append(errs, field.Invalid(p.Child("type"), t.Type, "must be either Utilization, Value, or AverageValue"))
	}
	if t.Value != nil && t.Value.Sign() != 1 {
		errs = append(errs, field.Invalid(p.Child("value"), t.Value, "must be positive"))
	}
	if t.AverageValue != nil && t.AverageValue.Sign() != 1 {
		errs = append(errs, field.Invalid(p.Child("averageValue"), t.AverageValue, "must be positive"))
	}
	if t.AverageUtilization != nil && *t.AverageUtilization < 1 {
		errs = append(errs, field.Invalid(p.Child("averageUtilization"), t.AverageUtilization, "must be greater than 0"))
	}
	return errs
}

func validateMetricID(id autoscalingv2.MetricIdentifier, p *field.Path) field.ErrorList {
	if id.Name == "" {
		return field.ErrorList{field.Required(p.Child("name"), "must specify a metric name")}
	}
	var errs field.ErrorList
	for _, msg := range pathvalidation.IsValidPathSegmentName(id.Name) {
		errs = append(errs, field.Invalid(p.Child("name"), id.Name, msg))
	}
	return errs
}

func validateScalingRules(r *autoscalingv2.HPAScalingRules, p *field.Path) field.ErrorList {
	if r == nil {
		return nil
	}
	var errs field.ErrorList
	if w := r.StabilizationWindowSeconds; w != nil && *w < 0 {
		errs = append(errs, field.Invalid(p.Child("stabilizationWindowSeconds"), *w, "must be greater than or equal to zero"))
	} else if w != nil && *w > hpaMaxStabilizationWindowSeconds {
		errs = append(errs, field.Invalid(p.Child("stabilizationWindowSeconds"), *w, fmt.Sprintf("must be less than or equal to %d", hpaMaxStabilizationWindowSeconds)))
	}
	selects := []string{string(autoscalingv2.DisabledPolicySelect), string(autoscalingv2.MaxChangePolicySelect), string(autoscalingv2.MinChangePolicySelect)}
	if s := r.SelectPolicy; s != nil && !contains(selects, string(*s)) {
		errs = append(errs, field.NotSupported(p.Child("selectPolicy"), *s, selects))
	}
	pp := p.Child("policies")
	if len(r.Policies) == 0 {
		errs = append(errs, field.Required(pp, "must specify at least one Policy"))
	}
	for i, pol := range r.Policies {
		ip := pp.Index(i)
		if pol.Type != autoscalingv2.PodsScalingPolicy && pol.Type != autoscalingv2.PercentScalingPolicy {
			errs = append(errs, field.NotSupported(ip.Child("type"), pol.Type, []string{"Percent", "Pods"}))
		}
		if pol.Value <= 0 {
			errs = append(errs, field.Invalid(ip.Child("value"), pol.Value, "must be greater than zero"))
		}
		if pol.PeriodSeconds <= 0 {
			errs = append(errs, field.Invalid(ip.Child("periodSeconds"), pol.PeriodSeconds, "must be greater than zero"))
		} else if pol.PeriodSeconds > hpaMaxPeriodSeconds {
			errs = append(errs, field.Invalid(ip.Child("periodSeconds"), pol.PeriodSeconds, fmt.Sprintf("must be less than or equal to %d", hpaMaxPeriodSeconds)))
		}
	}
	if t := r.Tolerance; t != nil && t.Sign() < 0 {
		errs = append(errs, field.Invalid(p.Child("tolerance"), t.String(), "must be greater than or equal to 0"))
	}
	return errs
}

func validateHPAStatus(s *autoscalingv2.HorizontalPodAutoscalerStatus) field.ErrorList {
	var errs field.ErrorList
	p := field.NewPath("status")
	if s.CurrentReplicas < 0 {
		errs = append(errs, field.Invalid(p.Child("currentReplicas"), s.CurrentReplicas, "must be greater than or equal to 0"))
	}
	if s.DesiredReplicas < 0 {
		errs = append(errs, field.Invalid(p.Child("desiredReplicas"), s.DesiredReplicas, "must be greater than or equal to 0"))
	}
	return errs
}
