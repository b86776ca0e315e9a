// Package scheduler is Skiff's kube-scheduler: it runs on the Raft leader,
// watches pods and nodes through the API (client-go informers over the
// master's loopback connection), and binds each unbound pod of the
// default scheduler to a node through pods/binding.
//
// The design follows kube-scheduler's: a priority queue with back-off and
// an unschedulable set moved by cluster changes; a cache of nodes and the
// pods on them, where a chosen pod is "assumed" at once so the next pod
// need not wait for the binding's Raft round trip; per attempt, an
// incremental snapshot of the cache, filters run over the nodes in
// parallel (stopping once enough feasible nodes are found, as
// kube-scheduler's percentageOfNodesToScore does), weighted scores, and
// preemption of lower-priority pods when nothing fits. The plugins are
// kube-scheduler's defaults, written anew (this module does not import
// k8s.io/kubernetes).
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	schedlisters "k8s.io/client-go/listers/scheduling/v1"
	"k8s.io/client-go/tools/cache"
)

// Name is the schedulerName of the pods this scheduler takes, and the
// component of its events.
const Name = corev1.DefaultSchedulerName

// Config configures a Scheduler; zero values take the defaults.
type Config struct {
	// Client reaches the API with rights to read pods and nodes, bind
	// pods, update pod status, delete pods and create events.
	Client kubernetes.Interface
	Logger *slog.Logger
	// Informers, when set, is a shared informer factory to take the
	// scheduler's informers from (on a master: the one the controllers
	// use, reading the state in process); its owner starts it too and
	// shuts it down. Nil: the scheduler builds its own over Client.
	Informers informers.SharedInformerFactory
	// Parallelism is the number of goroutines filtering and scoring
	// nodes (GOMAXPROCS).
	Parallelism int
	// BindWorkers bounds the bindings in flight (256).
	BindWorkers int
	// PercentageOfNodesToScore: 0 is kube-scheduler's adaptive share.
	PercentageOfNodesToScore int
	// InitialBackoff and MaxBackoff bound the retry back-off of
	// unschedulable pods (1s, 10s); MaxUnschedulable is how long a pod
	// waits for a cluster change before it is retried anyway (5m).
	InitialBackoff, MaxBackoff, MaxUnschedulable time.Duration
	// AssumedTTL is how long an assumed pod whose binding succeeded may
	// go unconfirmed by the informer (30s).
	AssumedTTL time.Duration
	// Metrics: kube-scheduler's metrics (metrics.go); nil: kept, not
	// served.
	Metrics *Metrics
}

func (c *Config) setDefaults() error {
	if c.Client == nil {
		return errors.New("scheduler: Client is required")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.InitialBackoff, time.Second)
	def(&c.MaxBackoff, 10*time.Second)
	def(&c.MaxUnschedulable, 5*time.Minute)
	def(&c.AssumedTTL, 30*time.Second)
	if c.BindWorkers <= 0 {
		c.BindWorkers = 256
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	return nil
}

// Scheduler binds unbound pods to nodes. Run it on the leader only.
type Scheduler struct {
	cfg    Config
	log    *slog.Logger
	client kubernetes.Interface

	cache *Cache
	queue *Queue
	fwk   *Framework
	algo  *algorithm
	snap  *Snapshot

	factory    informers.SharedInformerFactory
	podFactory informers.SharedInformerFactory
	ownFactory bool // factory and podFactory are the scheduler's own
	pods       corelisters.PodLister
	namespaces corelisters.NamespaceLister
	services   corelisters.ServiceLister
	replicaSet appslisters.ReplicaSetLister
	statefulSt appslisters.StatefulSetLister
	classes    *priorityClasses
	claims     corelisters.PersistentVolumeClaimLister
	synced     []cache.InformerSynced

	events  *eventRecorder
	bindSem chan struct{}
	bindWG  sync.WaitGroup

	stats struct {
		attempts, bound, unschedulable, errors, preemptions atomic.Int64
	}
}

// New builds a scheduler; Run starts it.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Scheduler{cfg: cfg, log: cfg.Logger, client: cfg.Client,
		cache:   NewCache(cfg.AssumedTTL, nil),
		queue:   NewQueue(cfg.InitialBackoff, cfg.MaxBackoff, cfg.MaxUnschedulable, nil),
		snap:    NewSnapshot(),
		events:  newEventRecorder(cfg.Client, cfg.Logger),
		bindSem: make(chan struct{}, cfg.BindWorkers),
	}
	s.fwk = NewDefaultFramework(s.defaultSelector, cfg.Parallelism)
	s.algo = newAlgorithm(s.fwk, cfg.PercentageOfNodesToScore)
	s.factory, s.ownFactory = cfg.Informers, cfg.Informers == nil
	podFactory := cfg.Informers
	if s.ownFactory {
		s.factory = informers.NewSharedInformerFactory(cfg.Client, 0)
		// Terminal pods use no resources: kube-scheduler leaves them out
		// of its pod informer (the handlers below drop them as well, for
		// a shared informer that has them).
		podFactory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.AndSelectors(
				fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
				fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed))).String()
		}))
	}
	podInf := podFactory.Core().V1().Pods()
	s.pods = podInf.Lister()
	nodeInf := s.factory.Core().V1().Nodes()
	nsInf := s.factory.Core().V1().Namespaces()
	svcInf := s.factory.Core().V1().Services()
	rsInf := s.factory.Apps().V1().ReplicaSets()
	ssInf := s.factory.Apps().V1().StatefulSets()
	pcInf := s.factory.Scheduling().V1().PriorityClasses()
	s.namespaces, s.services, s.replicaSet, s.statefulSt = nsInf.Lister(), svcInf.Lister(), rsInf.Lister(), ssInf.Lister()
	s.classes = &priorityClasses{lister: pcInf.Lister()}
	s.snap.NamespaceLabels = s.namespaceLabels

	// A pod that terminates is a deletion to the scheduler, as it is to
	// an informer with kube-scheduler's field selector.
	if _, err := podInf.Informer().AddEventHandler(cache.FilteringResourceEventHandler{
		FilterFunc: func(obj any) bool {
			pod, ok := obj.(*corev1.Pod)
			return !ok || !terminal(pod)
		},
		Handler: cache.ResourceEventHandlerFuncs{AddFunc: s.onPodAdd, UpdateFunc: s.onPodUpdate, DeleteFunc: s.onPodDelete},
	}); err != nil {
		return nil, err
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: s.onNodeAdd, UpdateFunc: s.onNodeUpdate, DeleteFunc: s.onNodeDelete,
	}); err != nil {
		return nil, err
	}
	pcHandler := func(any) { s.classes.refresh() }
	if _, err := pcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: pcHandler, UpdateFunc: func(_, o any) { pcHandler(o) }, DeleteFunc: pcHandler,
	}); err != nil {
		return nil, err
	}
	// Storage changes may make pods with claims schedulable
	// (plugin_volumebinding.go).
	pvcInf, pvInf, scInf := s.factory.Core().V1().PersistentVolumeClaims(), s.factory.Core().V1().PersistentVolumes(), s.factory.Storage().V1().StorageClasses()
	s.claims = pvcInf.Lister()
	s.fwk.add(VolumeBinding{claims: s.claims, volumes: pvInf.Lister(), classes: scInf.Lister()})
	storageChanged := func(any) { s.queue.MoveAll(eventForceFlush) }
	for _, inf := range []cache.SharedIndexInformer{pvcInf.Informer(), pvInf.Informer(), scInf.Informer()} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: storageChanged,
			UpdateFunc: func(_, o any) { storageChanged(o) }}); err != nil {
			return nil, err
		}
	}
	s.synced = []cache.InformerSynced{pvcInf.Informer().HasSynced, pvInf.Informer().HasSynced, scInf.Informer().HasSynced, podInf.Informer().HasSynced, nodeInf.Informer().HasSynced, nsInf.Informer().HasSynced,
		svcInf.Informer().HasSynced, rsInf.Informer().HasSynced, ssInf.Informer().HasSynced, pcInf.Informer().HasSynced}
	s.podFactory = podFactory
	return s, nil
}

// Run schedules until ctx ends (leadership lost), then waits for the
// bindings in flight.
func (s *Scheduler) Run(ctx context.Context) error {
	go s.ensurePriorityClasses(ctx)
	s.factory.Start(ctx.Done())
	s.podFactory.Start(ctx.Done())
	if s.ownFactory {
		defer s.podFactory.Shutdown()
		defer s.factory.Shutdown()
	}
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return ctx.Err()
	}
	s.classes.refresh()
	s.cfg.Metrics.queue.Store(s.queue)
	defer s.cfg.Metrics.queue.CompareAndSwap(s.queue, nil)
	a, b, u := s.queue.Len()
	s.log.Info("scheduler started", "nodes", s.cache.NodeCount(), "pending", a+b+u)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.events.run(ctx) }()
	go func() { defer wg.Done(); s.housekeeping(ctx) }()
	for {
		qp, cycle, ok := s.queue.Pop(ctx)
		if !ok {
			break
		}
		s.scheduleOne(ctx, qp, cycle)
	}
	s.bindWG.Wait()
	wg.Wait()
	s.log.Info("scheduler stopped", "bound", s.stats.bound.Load())
	return nil
}

// housekeeping moves pods out of back-off, retries long-unschedulable
// pods, expires unconfirmed assumed pods and logs progress.
func (s *Scheduler) housekeeping(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var lastLog time.Time
	var lastBound int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.queue.flush()
		if time.Since(lastLog) < 10*time.Second {
			continue
		}
		lastLog = time.Now()
		for _, p := range s.cache.cleanupAssumed() {
			s.log.Warn("assumed pod expired: binding not confirmed", "pod", p.Namespace+"/"+p.Name, "node", p.Spec.NodeName)
			if cur, err := s.pods.Pods(p.Namespace).Get(p.Name); err == nil && cur.UID == p.UID && responsible(cur) {
				s.queue.Add(cur, s.podInfo(cur))
			}
		}
		if bound := s.stats.bound.Load(); bound != lastBound {
			a, b, u := s.queue.Len()
			s.log.Info("scheduler progress", "bound", bound, "attempts", s.stats.attempts.Load(),
				"unschedulable", s.stats.unschedulable.Load(), "active", a, "backoff", b, "waiting", u)
			lastBound = bound
		}
	}
}

// responsible: an unbound pod of this scheduler, not being deleted and
// not held back by scheduling gates (spec.schedulingGates: the pod waits,
// untried, until its gates are removed).
func responsible(pod *corev1.Pod) bool {
	return pod.Spec.NodeName == "" && pod.DeletionTimestamp == nil && len(pod.Spec.SchedulingGates) == 0 &&
		(pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == Name) && !terminal(pod)
}

// terminal: the pod has finished (Succeeded or Failed) and holds no
// resources.
func terminal(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

func (s *Scheduler) podInfo(pod *corev1.Pod) *PodInfo {
	return NewPodInfo(pod, podPriority(pod, s.classes))
}

func (s *Scheduler) onPodAdd(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	switch {
	case pod.Spec.NodeName != "":
		s.cache.SetPod(s.podInfo(pod))
		s.queue.MoveAll(eventAssignedPodChange)
	case responsible(pod):
		s.queue.Add(pod, s.podInfo(pod))
	}
}

func (s *Scheduler) onPodUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*corev1.Pod)
	pod, ok2 := newObj.(*corev1.Pod)
	if !ok1 || !ok2 {
		return
	}
	switch {
	case pod.Spec.NodeName != "":
		if old.Spec.NodeName == "" {
			s.queue.Delete(pod.UID) // bound, by us or by someone else
		}
		s.cache.SetPod(s.podInfo(pod))
		if old.Spec.NodeName == "" || !labelsEqual(old.Labels, pod.Labels) {
			s.queue.MoveAll(eventAssignedPodChange)
		}
	case pod.DeletionTimestamp != nil:
		s.queue.Delete(pod.UID)
		s.cache.ForgetPod(pod.UID)
	case responsible(pod) && !s.cache.IsAssumed(pod.UID):
		s.queue.Add(pod, s.podInfo(pod))
	case !responsible(pod):
		s.queue.Delete(pod.UID) // gated again, or handed to another scheduler
	}
}

func (s *Scheduler) onPodDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	s.queue.Delete(pod.UID)
	s.cache.RemovePod(pod.UID)
	if pod.Spec.NodeName != "" {
		s.queue.MoveAll(eventAssignedPodDelete)
	}
}

func (s *Scheduler) onNodeAdd(obj any) {
	if n, ok := obj.(*corev1.Node); ok {
		s.cache.AddNode(n)
		s.queue.MoveAll(eventNodeAdd)
	}
}

func (s *Scheduler) onNodeUpdate(oldObj, newObj any) {
	old, ok1 := oldObj.(*corev1.Node)
	n, ok2 := newObj.(*corev1.Node)
	if !ok1 || !ok2 {
		return
	}
	s.cache.AddNode(n)
	if schedulingPropertiesChanged(old, n) {
		s.queue.MoveAll(eventNodeUpdate)
	}
}

// schedulingPropertiesChanged: what the filters look at changed (not the
// heartbeat times of the status).
func schedulingPropertiesChanged(a, b *corev1.Node) bool {
	if a.Spec.Unschedulable != b.Spec.Unschedulable || !labelsEqual(a.Labels, b.Labels) ||
		len(a.Spec.Taints) != len(b.Spec.Taints) || len(a.Status.Allocatable) != len(b.Status.Allocatable) {
		return true
	}
	for i := range a.Spec.Taints {
		if !a.Spec.Taints[i].MatchTaint(&b.Spec.Taints[i]) || a.Spec.Taints[i].Value != b.Spec.Taints[i].Value {
			return true
		}
	}
	for k, v := range a.Status.Allocatable {
		if w, ok := b.Status.Allocatable[k]; !ok || v.Cmp(w) != 0 {
			return true
		}
	}
	return false
}

func (s *Scheduler) onNodeDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if n, ok := obj.(*corev1.Node); ok {
		s.cache.RemoveNode(n.Name)
	}
}

// namespaceLabels feeds namespaceSelector terms.
func (s *Scheduler) namespaceLabels(name string) labels.Set {
	ns, err := s.namespaces.Get(name)
	if err != nil {
		return nil
	}
	return ns.Labels
}

// defaultSelector is the selector of the services, replica sets and
// stateful sets that select pod: the system default spreading keeps their
// pods apart.
func (s *Scheduler) defaultSelector(pod *corev1.Pod) labels.Selector {
	if len(pod.Labels) == 0 {
		return nil
	}
	set := labels.Set(pod.Labels)
	sel := labels.NewSelector()
	empty := true
	if svcs, err := s.services.Services(pod.Namespace).List(labels.Everything()); err == nil {
		for _, svc := range svcs {
			if len(svc.Spec.Selector) == 0 {
				continue
			}
			sl := labels.SelectorFromSet(svc.Spec.Selector)
			if !sl.Matches(set) {
				continue
			}
			if reqs, ok := sl.Requirements(); ok {
				sel, empty = sel.Add(reqs...), false
			}
		}
	}
	addLS := func(ls *metav1.LabelSelector) {
		sl, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil || sl.Empty() || !sl.Matches(set) {
			return
		}
		if reqs, ok := sl.Requirements(); ok {
			sel, empty = sel.Add(reqs...), false
		}
	}
	if rss, err := s.replicaSet.ReplicaSets(pod.Namespace).List(labels.Everything()); err == nil {
		for _, rs := range rss {
			addLS(rs.Spec.Selector)
		}
	}
	if sss, err := s.statefulSt.StatefulSets(pod.Namespace).List(labels.Everything()); err == nil {
		for _, ss := range sss {
			addLS(ss.Spec.Selector)
		}
	}
	if empty {
		return nil
	}
	return sel
}

// scheduleOne makes one scheduling attempt for a popped pod.
func (s *Scheduler) scheduleOne(ctx context.Context, qp *queuedPod, cycle int64) {
	pod := qp.pod
	cur, err := s.pods.Pods(pod.Namespace).Get(pod.Name)
	if err != nil || cur.UID != pod.UID || !responsible(cur) {
		s.queue.Done(pod.UID) // gone, bound or being deleted
		return
	}
	s.stats.attempts.Add(1)
	s.cache.UpdateSnapshot(s.snap)
	s.snap.Nominated = s.queue.Nominated()
	info := qp.info
	state := NewCycleState()
	start := time.Now()
	res, err := s.algo.schedule(ctx, state, info, s.snap)
	if err != nil {
		s.handleFailure(ctx, qp, cycle, state, err)
		s.cfg.Metrics.attempt(failureResult(err), start)
		return
	}
	// A shallow copy: only spec.nodeName differs, and nothing shared is
	// ever modified.
	shallow := *pod
	assumed := &shallow
	assumed.Spec.NodeName = res.Node
	ai := *info
	ai.Pod = assumed
	s.cache.AssumePod(&ai, res.Node)
	s.queue.Done(pod.UID)
	s.log.Debug("pod scheduled", "pod", pod.Namespace+"/"+pod.Name, "node", res.Node,
		"evaluated", res.Evaluated, "feasible", res.Feasible, "took", time.Since(start))
	s.bindAsync(ctx, qp, &ai, res.Node, start)
}

// failureResult is the result label of a failed attempt.
func failureResult(err error) string {
	var fe *FitError
	if errors.Is(err, ErrNoNodesAvailable) || errors.As(err, &fe) {
		return resultUnschedulable
	}
	return resultError
}

// handleFailure records why a pod fits nowhere, tries preemption, and puts
// the pod back in the queue.
func (s *Scheduler) handleFailure(ctx context.Context, qp *queuedPod, cycle int64, state *CycleState, err error) {
	pod := qp.pod
	var (
		fe       *FitError
		plugins  map[string]bool
		reason   = "SchedulerError"
		nominate string
	)
	if errors.Is(err, ErrNoNodesAvailable) {
		reason, plugins = corev1.PodReasonUnschedulable, map[string]bool{}
	}
	if errors.As(err, &fe) {
		reason, plugins = corev1.PodReasonUnschedulable, fe.Diagnosis.Plugins
		pr := s.algo.preempt(ctx, state, qp.info, s.snap, fe.Diagnosis)
		if pr.Node != "" {
			nominate = pr.Node
			s.executePreemption(ctx, qp.info, pr)
		} else {
			fe.Diagnosis.PostFilterMsg = pr.Msg
		}
	}
	msg := err.Error()
	if reason == corev1.PodReasonUnschedulable {
		s.stats.unschedulable.Add(1)
	} else {
		s.stats.errors.Add(1)
		s.log.Warn("scheduling attempt failed", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
	s.events.emit(pod, corev1.EventTypeWarning, "FailedScheduling", msg)
	s.updateCondition(ctx, pod, reason, msg, nominate)
	s.queue.AddUnschedulable(qp, cycle, plugins)
}

// bindAsync binds the assumed pod through pods/binding without holding up
// the next attempt; the number in flight is bounded.
func (s *Scheduler) bindAsync(ctx context.Context, qp *queuedPod, info *PodInfo, node string, start time.Time) {
	select {
	case s.bindSem <- struct{}{}:
	case <-ctx.Done():
		s.cache.ForgetPod(info.Pod.UID)
		return
	}
	s.bindWG.Add(1)
	go func() {
		defer s.bindWG.Done()
		defer func() { <-s.bindSem }()
		pod := info.Pod
		b := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: node},
		}
		err := preBindVolumes(ctx, s.client, s.claims, pod, node)
		if err == nil {
			bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = s.client.CoreV1().Pods(pod.Namespace).Bind(bctx, b, metav1.CreateOptions{})
			cancel()
		}
		if err == nil {
			s.cache.FinishBinding(pod.UID)
			s.stats.bound.Add(1)
			s.cfg.Metrics.scheduled(start, qp.added, qp.attempts)
			s.events.emit(pod, corev1.EventTypeNormal, "Scheduled",
				fmt.Sprintf("Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node))
			return
		}
		s.cache.ForgetPod(pod.UID)
		s.cfg.Metrics.attempt(resultError, start)
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) || ctx.Err() != nil {
			// Deleted, bound by someone else, or leadership lost: the next
			// leader takes it from here.
			return
		}
		s.log.Warn("binding failed", "pod", pod.Namespace+"/"+pod.Name, "node", node, "err", err)
		s.events.emit(qp.pod, corev1.EventTypeWarning, "FailedScheduling", "Binding rejected: "+err.Error())
		s.queue.Requeue(qp)
	}()
}

// updateCondition sets PodScheduled=False with reason and message (and
// status.nominatedNodeName when preemption nominated a node), unless the
// pod already says so.
func (s *Scheduler) updateCondition(ctx context.Context, pod *corev1.Pod, reason, msg, nominate string) {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == reason && c.Message == msg &&
			(nominate == "" || pod.Status.NominatedNodeName == nominate) {
			return
		}
	}
	s.events.patchStatus(ctx, pod, podScheduledPatch(reason, msg, nominate))
}

// priorityClasses resolves class names through the informer's lister.
type priorityClasses struct {
	lister schedlisters.PriorityClassLister
	def    atomic.Pointer[int32]
}

func (p *priorityClasses) Value(name string) (int32, bool) {
	pc, err := p.lister.Get(name)
	if err != nil {
		return 0, false
	}
	return pc.Value, true
}

func (p *priorityClasses) DefaultValue() (int32, bool) {
	if v := p.def.Load(); v != nil {
		return *v, true
	}
	return 0, false
}

// refresh finds the globalDefault class (the lowest value if several).
func (p *priorityClasses) refresh() {
	all, err := p.lister.List(labels.Everything())
	if err != nil {
		return
	}
	var def *int32
	for _, pc := range all {
		if pc.GlobalDefault && (def == nil || pc.Value < *def) {
			v := pc.Value
			def = &v
		}
	}
	p.def.Store(def)
}

// Built-in priority classes, as kube-apiserver creates them.
var systemPriorityClasses = []schedulingv1.PriorityClass{
	{ObjectMeta: metav1.ObjectMeta{Name: "system-node-critical"}, Value: 2000001000,
		Description: "Used for system critical pods that must not be moved from their current node."},
	{ObjectMeta: metav1.ObjectMeta{Name: "system-cluster-critical"}, Value: 2000000000,
		Description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."},
}

// ensurePriorityClasses creates the built-in classes when missing.
func (s *Scheduler) ensurePriorityClasses(ctx context.Context) {
	for _, pc := range systemPriorityClasses {
		for attempt := 0; ctx.Err() == nil; attempt++ {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := s.client.SchedulingV1().PriorityClasses().Create(cctx, &pc, metav1.CreateOptions{})
			cancel()
			if err == nil || apierrors.IsAlreadyExists(err) {
				break
			}
			if attempt == 4 {
				s.log.Warn("create built-in priority class", "name", pc.Name, "err", err)
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}
