// Package manager starts Skiff's controllers (the kube-controller-manager
// of a Skiff master) on the Raft leader: one client, one shared informer
// factory and one event broadcaster for all of them, all stopped when the
// context ends (leadership lost).
package manager

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"

	"github.com/skiff-io/skiff/server/controller"
	"github.com/skiff-io/skiff/server/controller/admissionpolicystatus"
	"github.com/skiff-io/skiff/server/controller/certificates"
	"github.com/skiff-io/skiff/server/controller/cronjob"
	"github.com/skiff-io/skiff/server/controller/daemonset"
	"github.com/skiff-io/skiff/server/controller/deployment"
	"github.com/skiff-io/skiff/server/controller/disruption"
	"github.com/skiff-io/skiff/server/controller/endpoints"
	"github.com/skiff-io/skiff/server/controller/endpointslice"
	"github.com/skiff-io/skiff/server/controller/endpointslicemirroring"
	"github.com/skiff-io/skiff/server/controller/garbagecollector"
	"github.com/skiff-io/skiff/server/controller/job"
	"github.com/skiff-io/skiff/server/controller/namespace"
	"github.com/skiff-io/skiff/server/controller/nodelifecycle"
	"github.com/skiff-io/skiff/server/controller/podautoscaler"
	"github.com/skiff-io/skiff/server/controller/podgc"
	"github.com/skiff-io/skiff/server/controller/replicaset"
	"github.com/skiff-io/skiff/server/controller/resourcequota"
	"github.com/skiff-io/skiff/server/controller/rootcacertpublisher"
	"github.com/skiff-io/skiff/server/controller/serviceaccount"
	"github.com/skiff-io/skiff/server/controller/servicelb"
	"github.com/skiff-io/skiff/server/controller/statefulset"
	"github.com/skiff-io/skiff/server/controller/ttlafterfinished"
	"github.com/skiff-io/skiff/server/controller/volume"
)

// Options tune the controllers. The zero value takes Kubernetes' defaults.
type Options struct {
	// NodeMonitorGracePeriod: a node whose Lease is not renewed for this
	// long is marked Ready=Unknown (default 40s).
	NodeMonitorGracePeriod time.Duration
	// NodeStartupGracePeriod: the same for a node that never reported
	// Ready (default 60s).
	NodeStartupGracePeriod time.Duration
	// NodeEvictionRate is how many nodes per second get their NoExecute
	// taint (and so their pods evicted) in a healthy zone (default 0.1);
	// SecondaryNodeEvictionRate in a partially disrupted zone of more than
	// LargeClusterSizeThreshold nodes (default 0.01; 0 below it).
	NodeEvictionRate          float64
	SecondaryNodeEvictionRate float64
	LargeClusterSizeThreshold int
	// UnhealthyZoneThreshold: the fraction of not-ready nodes (at least
	// 3) from which a zone counts as partially disrupted (default 0.55).
	UnhealthyZoneThreshold float64
	// TerminatedPodGCThreshold: terminated pods beyond this many are
	// deleted, oldest first (default 12500; negative disables).
	TerminatedPodGCThreshold int
	// DisableServiceLB: --disable servicelb (package servicelb).
	DisableServiceLB bool
	// JobBackoffBase and JobBackoffMax bound the delay before a failed
	// job pod is replaced (default 10s doubling up to 6m).
	JobBackoffBase time.Duration
	JobBackoffMax  time.Duration
	// HPA tunes the HorizontalPodAutoscaler controller (its Scales and
	// Mapper are filled here); it runs only when HPA.Metrics is set (a
	// master with a metrics store).
	HPA podautoscaler.Options
	// Gossip, if set, feeds the node lifecycle controller with gossip's
	// view of the nodes (combined with their Leases).
	Gossip nodelifecycle.Gossip
	// Workers per controller (default 5).
	Workers int
	// Informers, when set, is the shared informer factory to use instead
	// of one over cfg (a master passes one that reads its state in
	// process, shared with the scheduler). Its owner shuts it down.
	Informers informers.SharedInformerFactory
	// RootCA is published as the kube-root-ca.crt ConfigMap of every
	// namespace and put in service-account token Secrets; none if empty.
	RootCA []byte
	// TokenSigner fills Secrets of type kubernetes.io/service-account-token;
	// nil leaves them alone.
	TokenSigner serviceaccount.LegacySigner
	// CSRSigner, if set, approves and signs the kubelet's certificate
	// requests (server/controller/certificates).
	CSRSigner *certificates.Config
	Logger    *slog.Logger
}

func (o *Options) setDefaults() {
	if o.NodeMonitorGracePeriod <= 0 {
		o.NodeMonitorGracePeriod = 40 * time.Second
	}
	if o.NodeStartupGracePeriod <= 0 {
		o.NodeStartupGracePeriod = 60 * time.Second
	}
	if o.NodeEvictionRate <= 0 {
		o.NodeEvictionRate = 0.1
	}
	if o.SecondaryNodeEvictionRate <= 0 {
		o.SecondaryNodeEvictionRate = 0.01
	}
	if o.LargeClusterSizeThreshold <= 0 {
		o.LargeClusterSizeThreshold = 50
	}
	if o.UnhealthyZoneThreshold <= 0 {
		o.UnhealthyZoneThreshold = 0.55
	}
	if o.TerminatedPodGCThreshold == 0 {
		o.TerminatedPodGCThreshold = 12500
	}
	if o.JobBackoffBase <= 0 {
		o.JobBackoffBase = 10 * time.Second
	}
	if o.JobBackoffMax <= 0 {
		o.JobBackoffMax = 6 * time.Minute
	}
	if o.Workers <= 0 {
		o.Workers = 5
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// runner is one started controller.
type runner struct {
	name string
	run  func(ctx context.Context)
}

// Run builds every controller over cfg, starts the shared informers and
// runs the controllers until ctx ends; it returns when they have stopped.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	o.setDefaults()
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("controllers: client: %w", err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("controllers: metadata client: %w", err)
	}
	var cc *controller.Context
	if o.Informers != nil {
		cc, err = controller.NewContextWithInformers(client, meta, o.Informers, o.Logger)
	} else {
		cc, err = controller.NewContext(client, meta, o.Logger)
	}
	if err != nil {
		return err
	}
	defer cc.Events.Shutdown()
	if o.HPA.Metrics != nil {
		disc := memory.NewMemCacheClient(client.Discovery())
		o.HPA.Mapper = restmapper.NewDeferredDiscoveryRESTMapper(disc)
		o.HPA.Scales, err = scale.NewForConfig(cfg, o.HPA.Mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(disc))
		if err != nil {
			return fmt.Errorf("controllers: scale client: %w", err)
		}
	}
	runners, err := build(cc, o)
	if err != nil {
		return err
	}
	cc.Informers.Start(ctx.Done())
	if o.Informers == nil {
		defer cc.Informers.Shutdown()
	}
	log := o.Logger.With("component", "controller-manager")
	log.Info("controllers started", "count", len(runners))
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func(r runner) {
			defer wg.Done()
			r.run(ctx)
		}(r)
	}
	wg.Wait()
	log.Info("controllers stopped")
	return nil
}

// build constructs the controllers (they register their informers).
func build(cc *controller.Context, o Options) ([]runner, error) {
	w := o.Workers
	rs := replicaset.NewReplicaSet(cc)
	rc := replicaset.NewReplicationController(cc)
	dep := deployment.New(cc)
	jobs := job.New(cc, job.Options{BackoffBase: o.JobBackoffBase, BackoffMax: o.JobBackoffMax})
	ttl := ttlafterfinished.New(cc)
	cron := cronjob.New(cc)
	ns := namespace.New(cc)
	sa := serviceaccount.New(cc)
	gc := garbagecollector.New(cc)
	eps := endpoints.New(cc)
	slices := endpointslice.New(cc)
	mirror := endpointslicemirroring.New(cc)
	rq := resourcequota.New(cc)
	pdb := disruption.New(cc)
	ds := daemonset.New(cc)
	sts := statefulset.New(cc)
	pvs := volume.New(cc)
	pgc := podgc.New(cc, podgc.Options{TerminatedThreshold: o.TerminatedPodGCThreshold})
	nodes := nodelifecycle.New(cc, nodelifecycle.Options{
		GracePeriod: o.NodeMonitorGracePeriod, StartupGracePeriod: o.NodeStartupGracePeriod,
		EvictionRate: o.NodeEvictionRate, SecondaryEvictionRate: o.SecondaryNodeEvictionRate,
		LargeClusterSizeThreshold: o.LargeClusterSizeThreshold, UnhealthyZoneThreshold: o.UnhealthyZoneThreshold,
		Gossip: o.Gossip,
	})
	runners := []runner{
		{"replicaset", func(ctx context.Context) { rs.Run(ctx, w) }},
		{"replicationcontroller", func(ctx context.Context) { rc.Run(ctx, w) }},
		{"deployment", func(ctx context.Context) { dep.Run(ctx, w) }},
		{"job", func(ctx context.Context) { jobs.Run(ctx, w) }},
		{"ttl-after-finished", func(ctx context.Context) { ttl.Run(ctx, 1) }},
		{"cronjob", func(ctx context.Context) { cron.Run(ctx, w) }},
		{"namespace", func(ctx context.Context) { ns.Run(ctx, 2) }},
		{"serviceaccount", func(ctx context.Context) { sa.Run(ctx, 1) }},
		{"garbagecollector", func(ctx context.Context) { gc.Run(ctx, 10) }},
		{"endpoints", func(ctx context.Context) { eps.Run(ctx, w) }},
		{"endpointslice", func(ctx context.Context) { slices.Run(ctx, w) }},
		{"endpointslicemirroring", func(ctx context.Context) { mirror.Run(ctx, w) }},
		{"resourcequota", func(ctx context.Context) { rq.Run(ctx, w) }},
		{"disruption", func(ctx context.Context) { pdb.Run(ctx, w) }},
		{"podgc", pgc.Run},
		{"daemonset", func(ctx context.Context) { ds.Run(ctx, w) }},
		{"statefulset", func(ctx context.Context) { sts.Run(ctx, w) }},
		{"persistentvolume", func(ctx context.Context) { pvs.Run(ctx, w) }},
		{"nodelifecycle", func(ctx context.Context) { nodes.Run(ctx, w) }},
		{"servicelb", servicelb.New(cc, servicelb.Options{DisableServiceLB: o.DisableServiceLB}).Run},
		{"validatingadmissionpolicy-status", func(ctx context.Context) { admissionpolicystatus.New(cc).Run(ctx, 1) }},
	}
	if o.HPA.Metrics != nil {
		hpa := podautoscaler.New(cc, o.HPA)
		runners = append(runners, runner{"horizontalpodautoscaling", func(ctx context.Context) { hpa.Run(ctx, w) }})
	}
	if len(o.RootCA) > 0 {
		pub := rootcacertpublisher.New(cc, o.RootCA)
		runners = append(runners, runner{"root-ca-cert-publisher", func(ctx context.Context) { pub.Run(ctx, 1) }})
	}
	if o.TokenSigner != nil {
		tokens := serviceaccount.NewTokens(cc, o.TokenSigner, o.RootCA)
		runners = append(runners, runner{"serviceaccount-token", func(ctx context.Context) { tokens.Run(ctx, 1) }})
	}
	if o.CSRSigner != nil {
		csrs := certificates.New(cc, *o.CSRSigner)
		runners = append(runners, runner{"csr-approving-signing", func(ctx context.Context) { csrs.Run(ctx, 2) }})
	}
	return runners, nil
}
