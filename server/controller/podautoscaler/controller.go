// Package podautoscaler is the HorizontalPodAutoscaler controller: every
// sync period it reads each HPA's metrics (resource, container resource,
// pods, object and external), computes the replica count with
// Kubernetes' algorithm (tolerance, unready pods and missing metrics,
// stabilization windows, scaling policies, min and max), sets it through
// the target's /scale subresource, and reports status, conditions and
// events as kube-controller-manager does.
package podautoscaler

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/scale"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-io/skiff/server/controller"
)

const component = "horizontal-pod-autoscaler"

// Options tune the controller; zero values take kube-controller-manager's
// defaults.
type Options struct {
	// SyncPeriod: how often each HPA is reconciled (default 15s).
	SyncPeriod time.Duration
	// DownscaleStabilization: the scale-down stabilization window of an
	// HPA that sets none (default 5m).
	DownscaleStabilization time.Duration
	// Tolerance: no rescale while usage is within this fraction of the
	// target (default 0.1).
	Tolerance float64
	// CPUInitializationPeriod and InitialReadinessDelay decide when a
	// starting pod's CPU counts (default 5m and 30s).
	CPUInitializationPeriod time.Duration
	InitialReadinessDelay   time.Duration
	// Scales reads and writes targets' /scale; Mapper maps their kinds to
	// resources (Reset on a miss, for kinds added since).
	Scales scale.ScalesGetter
	Mapper meta.ResettableRESTMapper
	// Metrics is where metrics come from.
	Metrics Metrics
}

func (o *Options) setDefaults() {
	if o.SyncPeriod <= 0 {
		o.SyncPeriod = 15 * time.Second
	}
	if o.DownscaleStabilization <= 0 {
		o.DownscaleStabilization = 5 * time.Minute
	}
	if o.Tolerance <= 0 {
		o.Tolerance = 0.1
	}
	if o.CPUInitializationPeriod <= 0 {
		o.CPUInitializationPeriod = 5 * time.Minute
	}
	if o.InitialReadinessDelay <= 0 {
		o.InitialReadinessDelay = 30 * time.Second
	}
}

// Controller reconciles HorizontalPodAutoscalers.
type Controller struct {
	cc       *controller.Context
	o        Options
	hpas     autoscalinglisters.HorizontalPodAutoscalerLister
	hpaInf   cache.SharedIndexInformer
	podInf   cache.SharedIndexInformer
	calc     *calculator
	hist     *history
	queue    controller.Queue
	recorder record.EventRecorder
	log      *slog.Logger
}

// podLister adapts the pod lister.
type podLister struct{ l corelisters.PodLister }

func (p podLister) List(ns string, sel labels.Selector) ([]*corev1.Pod, error) {
	return p.l.Pods(ns).List(sel)
}

// New returns the HPA controller.
func New(cc *controller.Context, o Options) *Controller {
	o.setDefaults()
	inf := cc.Informers.Autoscaling().V2().HorizontalPodAutoscalers()
	pods := cc.Informers.Core().V1().Pods()
	c := &Controller{
		cc: cc, o: o, hpas: inf.Lister(), hpaInf: inf.Informer(), podInf: pods.Informer(),
		calc: &calculator{metrics: o.Metrics, pods: podLister{pods.Lister()}, cpuInitializationPeriod: o.CPUInitializationPeriod,
			initialReadinessDelay: o.InitialReadinessDelay, now: cc.Now},
		hist:     newHistory(o.DownscaleStabilization),
		queue:    controller.NewQueue(component, 0),
		recorder: cc.Recorder(component),
		log:      cc.Log(component),
	}
	controller.AddHandler(c.hpaInf, cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.enqueue(obj) },
		UpdateFunc: func(old, obj any) {
			// Status updates (our own) wait for the next period.
			o, n := old.(*autoscalingv2.HorizontalPodAutoscaler), obj.(*autoscalingv2.HorizontalPodAutoscaler)
			if !apiequality.Semantic.DeepEqual(o.Spec, n.Spec) {
				c.enqueue(obj)
			}
		},
		DeleteFunc: func(obj any) {
			if key, ok := controller.KeyOf(obj); ok {
				c.hist.forget(key)
			}
		},
	}, c.log)
	return c
}

func (c *Controller) enqueue(obj any) {
	if key, ok := controller.KeyOf(obj); ok {
		c.queue.Add(key)
	}
}

// Run runs workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	if !controller.WaitForSync(ctx, c.hpaInf, c.podInf) {
		return
	}
	c.log.Info("started", "syncPeriod", c.o.SyncPeriod)
	controller.RunWorkers(ctx, c.queue, workers, c.log, c.sync)
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	hpa, err := c.hpas.HorizontalPodAutoscalers(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.hist.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	// Every HPA comes back once a period, whatever happened.
	defer c.queue.AddAfter(key, c.o.SyncPeriod)
	return c.reconcile(ctx, key, hpa.DeepCopy())
}

// reconcile is one pass over an HPA.
func (c *Controller) reconcile(ctx context.Context, key string, hpa *autoscalingv2.HorizontalPodAutoscaler) error {
	old := hpa.Status.DeepCopy()
	ref := hpa.Spec.ScaleTargetRef
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		c.recorder.Event(hpa, corev1.EventTypeWarning, "FailedGetScale", err.Error())
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedGetScale", "the HPA controller was unable to get the target's current scale: %v", err)
		c.updateStatus(ctx, hpa, old)
		return fmt.Errorf("invalid API version in scale target reference: %w", err)
	}
	sc, gr, err := c.getScale(ctx, hpa.Namespace, gv.WithKind(ref.Kind).GroupKind(), ref.Name)
	if err != nil {
		c.recorder.Event(hpa, corev1.EventTypeWarning, "FailedGetScale", err.Error())
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedGetScale", "the HPA controller was unable to get the target's current scale: %v", err)
		c.updateStatus(ctx, hpa, old)
		return fmt.Errorf("failed to query scale subresource for %s/%s: %w", ref.Kind, ref.Name, err)
	}
	setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")
	current := sc.Spec.Replicas
	hpa.Status.CurrentReplicas = sc.Status.Replicas
	minR := int32(1)
	if hpa.Spec.MinReplicas != nil {
		minR = *hpa.Spec.MinReplicas
	}
	maxR := hpa.Spec.MaxReplicas
	now := c.cc.Now()
	var desired int32
	var reason string
	var statuses []autoscalingv2.MetricStatus
	switch {
	case current == 0 && minR != 0:
		desired = 0
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
	case current > maxR:
		desired, reason = maxR, "Current number of replicas above Spec.MaxReplicas"
	case current < minR:
		desired, reason = minR, "Current number of replicas below Spec.MinReplicas"
	default:
		proposed, metricName, st, err := c.replicasForMetrics(ctx, hpa, sc)
		statuses = st
		if err != nil && proposed == -1 {
			c.setStatus(hpa, current, sc.Status.Replicas, current, statuses, false, now)
			c.updateStatus(ctx, hpa, old)
			return fmt.Errorf("failed to compute desired number of replicas based on listed metrics for %s/%s: %w", ref.Kind, ref.Name, err)
		}
		if proposed > current {
			reason = metricName + " above target"
		} else if proposed < current {
			reason = "All metrics below target"
		}
		var l limits
		if hpa.Spec.Behavior == nil {
			l = c.hist.normalize(key, now, current, proposed, minR, maxR)
		} else {
			l = c.hist.normalizeWithBehavior(key, now, withDefaultScaleDown(hpa.Spec.Behavior, c.o.DownscaleStabilization), current, proposed, minR, maxR)
		}
		desired = l.replicas
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, l.ableReason, "%s", l.ableMessage)
		status := corev1.ConditionFalse
		if l.limited {
			status = corev1.ConditionTrue
		}
		setCondition(hpa, autoscalingv2.ScalingLimited, status, l.limitedReason, "%s", l.limitedMesage)
	}
	rescale := desired != current
	if rescale {
		upd := sc.DeepCopy()
		upd.Spec.Replicas = desired
		if _, err := c.o.Scales.Scales(hpa.Namespace).Update(ctx, gr, upd, metav1.UpdateOptions{}); err != nil {
			c.recorder.Eventf(hpa, corev1.EventTypeWarning, "FailedRescale", "New size: %d; reason: %s; error: %v", desired, reason, err)
			setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedUpdateScale", "the HPA controller was unable to update the target scale: %v", err)
			c.setStatus(hpa, current, sc.Status.Replicas, current, statuses, false, now)
			c.updateStatus(ctx, hpa, old)
			return fmt.Errorf("failed to rescale %s/%s: %w", ref.Kind, ref.Name, err)
		}
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededRescale", "the HPA controller was able to update the target scale to %d", desired)
		c.recorder.Eventf(hpa, corev1.EventTypeNormal, "SuccessfulRescale", "New size: %d; reason: %s", desired, reason)
		c.hist.record(key, now, hpa.Spec.Behavior, current, desired)
		c.log.Info("rescaled", "hpa", key, "target", ref.Kind+"/"+ref.Name, "from", current, "to", desired, "reason", reason)
	}
	c.setStatus(hpa, current, sc.Status.Replicas, desired, statuses, rescale, now)
	c.updateStatus(ctx, hpa, old)
	return nil
}

// withDefaultScaleDown fills the scale-down window the flag sets when the
// HPA leaves it unset.
func withDefaultScaleDown(b *autoscalingv2.HorizontalPodAutoscalerBehavior, window time.Duration) *autoscalingv2.HorizontalPodAutoscalerBehavior {
	if b.ScaleDown != nil && b.ScaleDown.StabilizationWindowSeconds != nil {
		return b
	}
	out := b.DeepCopy()
	if out.ScaleDown == nil {
		out.ScaleDown = &autoscalingv2.HPAScalingRules{}
	}
	s := int32(window / time.Second)
	out.ScaleDown.StabilizationWindowSeconds = &s
	return out
}

// getScale reads the target's scale, trying each resource its kind maps
// to (refreshing the mapping once on a miss).
func (c *Controller) getScale(ctx context.Context, ns string, gk schema.GroupKind, name string) (*autoscalingv1.Scale, schema.GroupResource, error) {
	mappings, err := c.o.Mapper.RESTMappings(gk)
	if err != nil || len(mappings) == 0 {
		c.o.Mapper.Reset()
		if mappings, err = c.o.Mapper.RESTMappings(gk); err != nil {
			return nil, schema.GroupResource{}, fmt.Errorf("unable to determine resource for scale target reference: %w", err)
		}
	}
	var firstErr error
	for _, m := range mappings {
		gr := m.Resource.GroupResource()
		sc, err := c.o.Scales.Scales(ns).Get(ctx, gr, name, metav1.GetOptions{})
		if err == nil {
			return sc, gr, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("no mapping for %s", gk)
	}
	return nil, schema.GroupResource{}, firstErr
}

// setStatus records the pass's outcome.
func (c *Controller) setStatus(hpa *autoscalingv2.HorizontalPodAutoscaler, _, currentReplicas, desired int32, statuses []autoscalingv2.MetricStatus, rescaled bool, now time.Time) {
	hpa.Status.CurrentReplicas = currentReplicas
	hpa.Status.DesiredReplicas = desired
	hpa.Status.CurrentMetrics = statuses
	if rescaled {
		t := metav1.NewTime(now)
		hpa.Status.LastScaleTime = &t
	}
	if hpa.Generation != 0 {
		g := hpa.Generation
		hpa.Status.ObservedGeneration = &g
	}
}

// updateStatus writes the status if it changed.
func (c *Controller) updateStatus(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, old *autoscalingv2.HorizontalPodAutoscalerStatus) {
	if apiequality.Semantic.DeepEqual(old, &hpa.Status) {
		return
	}
	if _, err := c.cc.Client.AutoscalingV2().HorizontalPodAutoscalers(hpa.Namespace).UpdateStatus(ctx, hpa, metav1.UpdateOptions{}); err != nil {
		c.recorder.Event(hpa, corev1.EventTypeWarning, "FailedUpdateStatus", err.Error())
		c.log.Warn("status update failed", "hpa", hpa.Namespace+"/"+hpa.Name, "err", err)
	}
}

// setCondition sets a condition, keeping its transition time when its
// status does not change.
func setCondition(hpa *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType, status corev1.ConditionStatus,
	reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for i := range hpa.Status.Conditions {
		cond := &hpa.Status.Conditions[i]
		if cond.Type != typ {
			continue
		}
		if cond.Status != status {
			cond.LastTransitionTime = metav1.Now()
		}
		cond.Status, cond.Reason, cond.Message = status, reason, msg
		return
	}
	hpa.Status.Conditions = append(hpa.Status.Conditions, autoscalingv2.HorizontalPodAutoscalerCondition{
		Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.Now()})
}
