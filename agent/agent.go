package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/skiff-io/skiff/agent/localpath"
	"github.com/skiff-io/skiff/agent/stats"
	"github.com/skiff-io/skiff/runtime"
)

// Agent is one node's kubelet.
type Agent struct {
	cfg Config
	log *slog.Logger

	podInformer PodSource
	pods        corelisters.PodLister
	factory     informers.SharedInformerFactory

	workers  *podWorkers
	status   *statusManager
	probes   *probeManager
	volumes  *volumeManager
	events   *eventRecorder
	backoffs *backoffs

	// A heartbeat burst (HeartbeatBurst): the Lease is renewed often
	// until burstUntil; burst wakes the lease loop.
	burstMu    sync.Mutex
	burstUntil time.Time
	burst      chan struct{}

	// masterEnv caches the kubernetes Service's variables (serviceenv.go).
	masterEnv masterEnvCache

	// podCIDR is the node's spec.podCIDR once the master assigned it.
	podCIDR atomic.Pointer[string]
	// runtimeName prefixes container IDs in pod status ("fake://...").
	runtimeName string
	// degradations: what the runtime cannot give containers on this host
	// (hostlimits.go), asked once.
	degradations []string

	httpSrv *http.Server
	ln      net.Listener

	// Resource stats (statssource.go) and the kubelet's metrics
	// (kubeletmetrics.go); statsLoop is nil when no collector works here.
	statsSrc  *statsSource
	statsLoop *stats.Loop
	kmetrics  *kubeletMetrics
	// rawRuntime is cfg.Runtime before instrumentation, for its optional
	// interfaces; runtimeOps counts the calls through cfg.Runtime and
	// cfg.Images.
	rawRuntime runtime.Runtime
	runtimeOps *runtimeOps

	// static holds the static pods read from ManifestDir (staticpods.go).
	static *staticPods
	// checkpointDirty wakes checkpointLoop (checkpoint.go).
	checkpointDirty chan struct{}

	ready atomic.Bool
	wg    sync.WaitGroup
}

// New prepares an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	// The kubelet's runtime calls are counted and timed (runtimeops.go);
	// the runtime's optional interfaces are asked of rawRuntime.
	raw, ops := cfg.Runtime, newRuntimeOps()
	cfg.Runtime = instrumentedRuntime{rt: raw, ops: ops}
	cfg.Images = instrumentedImages{is: cfg.Images, ops: ops}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("component", "agent", "node", cfg.NodeName), runtimeName: "skiff", rawRuntime: raw, runtimeOps: ops}
	if v, ok := raw.(interface{ RuntimeVersion() string }); ok {
		if name, _, found := strings.Cut(v.RuntimeVersion(), "://"); found {
			a.runtimeName = name
		}
	}
	a.degradations = runtimeDegradations(raw)
	evClient := cfg.EventClient
	if evClient == nil {
		evClient = cfg.Client
	}
	a.events = newEventRecorder(evClient, cfg.NodeName, a.log)
	a.burst = make(chan struct{}, 1)
	a.checkpointDirty = make(chan struct{}, 1)
	a.static = newStaticPods()
	a.backoffs = newBackoffs(cfg.BackoffBase, cfg.BackoffMax)
	a.status = newStatusManager(a)
	a.probes = newProbeManager(a)
	a.volumes = newVolumeManager(a)
	a.workers = newPodWorkers(a)
	a.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", cfg.NodeName).String()
		}))
	if cfg.Pods != nil {
		a.podInformer = cfg.Pods
	} else {
		a.podInformer = a.factory.Core().V1().Pods().Informer()
		a.pods = a.factory.Core().V1().Pods().Lister()
	}
	a.statsSrc = newStatsSource(a)
	collector := cfg.StatsCollector
	if collector == nil {
		c, err := stats.NewCgroupCollector(stats.CgroupConfig{FsInterval: cfg.StatsInterval, Logger: a.log})
		if err != nil {
			a.log.Warn("no resource stats on this node", "err", err)
		} else {
			collector = c
		}
	}
	if collector != nil {
		a.statsLoop = stats.NewLoop(a.statsSrc, collector, cfg.StatsInterval, a.log.With("component", "stats"))
	}
	a.kmetrics = newKubeletMetrics(a)
	if cfg.ServingTLS != nil {
		addr := net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.KubeletPort))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("kubelet listener %s: %w", addr, err)
		}
		a.ln = ln
		a.httpSrv = a.newKubeletServer()
	}
	return a, nil
}

// Addr is the kubelet server's address (nil without a server).
func (a *Agent) Addr() net.Addr {
	if a.ln == nil {
		return nil
	}
	return a.ln.Addr()
}

// Run registers the node and runs the kubelet until ctx ends. Containers
// keep running after it returns (as a kubelet's do when it stops).
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if a.httpSrv != nil {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.httpSrv.ServeTLS(a.ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.log.Error("kubelet server stopped", "err", err)
			}
		}()
	}
	defer a.stopServer()
	// Node autonomy: the pods last known to be bound here run again at
	// once, with or without a master (checkpoint.go). Hollow nodes (a
	// shared pod source) keep no checkpoint.
	var restored map[types.UID]*corev1.Pod
	if a.cfg.Pods == nil {
		restored = a.restoreCheckpoint()
		a.goRun(ctx, a.staticPodLoop)
	}
	if err := a.registerNode(ctx); err != nil {
		a.workers.stopAll()
		a.probes.stopAll()
		if ctx.Err() != nil {
			return nil // stopped while registering: a stop, not a failure
		}
		return err
	}
	a.log.Info("node registered")
	a.reportDegradations(ctx)
	a.goRun(ctx, a.leaseLoop)
	a.goRun(ctx, a.nodeStatusLoop)
	a.goRun(ctx, a.nodeWatchLoop)
	a.goRun(ctx, a.status.run)
	a.goRun(ctx, a.events.run)

	if _, err := a.podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.onPod(obj) },
		UpdateFunc: func(_, obj any) { a.onPod(obj) },
		DeleteFunc: func(obj any) { a.onPodDelete(obj) },
	}); err != nil {
		return err
	}
	a.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), a.podInformer.HasSynced) {
		// Stopped before the first list: a stop, not a failure. The
		// kubelet server's goroutine is in a.wg too.
		a.stopServer()
		a.workers.stopAll()
		a.probes.stopAll()
		a.wg.Wait()
		a.factory.Shutdown()
		return nil
	}
	a.ready.Store(true)
	a.log.Info("pod informer synced", "pods", len(a.podInformer.GetStore().ListKeys()))
	if a.cfg.Pods == nil {
		a.reconcileCheckpoint(restored)
		a.goRun(ctx, a.checkpointLoop)
	}
	// Adopt what the runtime already runs for pods that still exist, and
	// clean up after pods deleted while the agent was down.
	a.housekeeping(ctx)
	a.goRun(ctx, a.relistLoop)
	a.goRun(ctx, a.housekeepingLoop)
	a.goRun(ctx, a.volumes.refreshLoop)
	if a.statsLoop != nil {
		a.goRun(ctx, a.statsLoop.Run)
	}
	if a.cfg.Pods == nil {
		lp := &localpath.Reclaimer{Client: a.cfg.Client, Node: a.cfg.NodeName, Log: a.log}
		a.goRun(ctx, lp.Run)
	}
	<-ctx.Done()
	// The kubelet server's goroutine is in a.wg: shut it down before
	// waiting, or the wait never ends (the agent would hang on SIGTERM).
	a.stopServer()
	a.workers.stopAll()
	a.probes.stopAll()
	a.wg.Wait()
	a.factory.Shutdown()
	return nil
}

func (a *Agent) goRun(ctx context.Context, fn func(context.Context)) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		fn(ctx)
	}()
}

func (a *Agent) stopServer() {
	if a.httpSrv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.httpSrv.Shutdown(ctx)
	_ = a.httpSrv.Close()
}

func (a *Agent) onPod(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != a.cfg.NodeName {
		return
	}
	if isMirrorPod(pod) {
		return // the static pod from the file runs; its mirror only shows it
	}
	a.kmetrics.podStart.observe(pod)
	a.workers.update(pod)
	a.markCheckpointDirty()
}

func (a *Agent) onPodDelete(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok || isMirrorPod(pod) {
		return
	}
	a.kmetrics.podStart.forget(pod.UID)
	a.workers.remove(pod)
	a.markCheckpointDirty()
}

// podByUID returns the pod from the informer's cache.
func (a *Agent) podByUID(uid types.UID) (*corev1.Pod, bool) {
	for _, obj := range a.podInformer.GetStore().List() {
		if p := obj.(*corev1.Pod); p.UID == uid {
			return p, true
		}
	}
	return nil, false
}

// relistLoop polls the runtime for container state changes (the kubelet's
// PLEG) and wakes the pod workers whose containers changed.
func (a *Agent) relistLoop(ctx context.Context) {
	last := map[string]runtimeapi.ContainerState{}
	t := time.NewTicker(a.cfg.RelistPeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cs, err := a.cfg.Runtime.ListContainers(ctx, nil)
		if err != nil {
			a.log.Warn("relist containers", "err", err)
			continue
		}
		seen := make(map[string]runtimeapi.ContainerState, len(cs))
		for _, c := range cs {
			seen[c.Id] = c.State
			if prev, ok := last[c.Id]; !ok || prev != c.State {
				if uid := c.Labels[labelPodUID]; uid != "" {
					a.workers.trigger(types.UID(uid))
				}
			}
		}
		last = seen
	}
}

// Ready reports whether the agent has synced its pods.
func (a *Agent) Ready() bool { return a.ready.Load() }
