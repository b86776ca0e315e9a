package main

import (
	"github.com/spf13/pflag"

	"github.com/skiff-io/skiff/server/controller/manager"
)

// addControllerFlags adds the flags of the leader's controllers (named as
// kube-controller-manager's).
func addControllerFlags(f *pflag.FlagSet, o *manager.Options) {
	f.DurationVar(&o.NodeMonitorGracePeriod, "node-monitor-grace-period", 0, "how long a node may go without renewing its Lease before it is marked Ready=Unknown and tainted unreachable (default 40s)")
	f.DurationVar(&o.NodeStartupGracePeriod, "node-startup-grace-period", 0, "the same, for a node that has never been Ready (default 1m)")
	f.Float64Var(&o.NodeEvictionRate, "node-eviction-rate", 0, "nodes per second whose pods are evicted (NoExecute taint) when a zone is healthy (default 0.1)")
	f.Float64Var(&o.SecondaryNodeEvictionRate, "secondary-node-eviction-rate", 0, "nodes per second whose pods are evicted in a partially disrupted zone larger than --large-cluster-size-threshold (default 0.01)")
	f.IntVar(&o.LargeClusterSizeThreshold, "large-cluster-size-threshold", 0, "nodes above which a zone is large: a partially disrupted small zone evicts nothing (default 50)")
	f.Float64Var(&o.UnhealthyZoneThreshold, "unhealthy-zone-threshold", 0, "fraction of not-ready nodes (at least 3) from which a zone is partially disrupted (default 0.55)")
	f.IntVar(&o.TerminatedPodGCThreshold, "terminated-pod-gc-threshold", 0, "terminated pods kept before the oldest are deleted; negative keeps them all (default 12500)")
	f.DurationVar(&o.JobBackoffBase, "job-backoff-base", 0, "first delay before a failed Job pod is replaced, doubling per failure (default 10s)")
	f.DurationVar(&o.JobBackoffMax, "job-backoff-max", 0, "largest delay before a failed Job pod is replaced (default 6m)")
	f.DurationVar(&o.HPA.SyncPeriod, "horizontal-pod-autoscaler-sync-period", 0, "how often each HorizontalPodAutoscaler is reconciled (default 15s)")
	f.DurationVar(&o.HPA.DownscaleStabilization, "horizontal-pod-autoscaler-downscale-stabilization", 0, "scale-down stabilization window of an HPA whose behavior sets none (default 5m)")
	f.Float64Var(&o.HPA.Tolerance, "horizontal-pod-autoscaler-tolerance", 0, "no rescale while the ratio of a metric to its target is within this fraction of 1 (default 0.1)")
	f.DurationVar(&o.HPA.CPUInitializationPeriod, "horizontal-pod-autoscaler-cpu-initialization-period", 0, "a pod started less than this long ago counts for CPU only with a sample taken after it became ready (default 5m)")
	f.DurationVar(&o.HPA.InitialReadinessDelay, "horizontal-pod-autoscaler-initial-readiness-delay", 0, "after it, a started pod that turns unready is taken as unready for CPU (default 30s)")
	for _, n := range []string{"job-backoff-base", "job-backoff-max"} {
		_ = f.MarkHidden(n)
	}
}
