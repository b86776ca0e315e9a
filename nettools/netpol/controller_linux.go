package netpol

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	netlisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
)

// Config configures a Controller.
type Config struct {
	Client   kubernetes.Interface
	NodeName string
	// NetNS is the node's network namespace as a path ("" for this
	// process's).
	NetNS string
	// ResyncPeriod: the table is rewritten at least this often (60s),
	// repairing changes made behind the agent's back.
	ResyncPeriod time.Duration
	Logger       *slog.Logger
}

// Controller keeps the node's policy table in step with the
// NetworkPolicies, pods and namespaces of the cluster.
type Controller struct {
	cfg Config
	log *slog.Logger
}

// New returns a Controller; Run starts it.
func New(cfg Config) (*Controller, error) {
	if cfg.Client == nil || cfg.NodeName == "" {
		return nil, fmt.Errorf("netpol: Client and NodeName are required")
	}
	if cfg.ResyncPeriod <= 0 {
		cfg.ResyncPeriod = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Controller{cfg: cfg, log: cfg.Logger.With("component", "network-policy")}, nil
}

// Logger is the controller's logger.
func (c *Controller) Logger() *slog.Logger { return c.log }

// Run enforces the policies until ctx ends. The table stays after it
// returns: policies remain enforced while the agent restarts, and the next
// start replaces it.
func (c *Controller) Run(ctx context.Context) error {
	if err := EnableBridgeFiltering(c.cfg.NetNS); err != nil {
		c.log.Warn("same-node pod traffic cannot be filtered", "err", err)
	}
	factory := informers.NewSharedInformerFactory(c.cfg.Client, 0)
	pods := factory.Core().V1().Pods()
	nss := factory.Core().V1().Namespaces()
	pols := factory.Networking().V1().NetworkPolicies()
	kick := make(chan struct{}, 1)
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { trigger(kick) },
		UpdateFunc: func(any, any) { trigger(kick) },
		DeleteFunc: func(any) { trigger(kick) },
	}
	for _, inf := range []cache.SharedIndexInformer{pods.Informer(), nss.Informer(), pols.Informer()} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return err
		}
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced, nss.Informer().HasSynced, pols.Informer().HasSynced) {
		return ctx.Err()
	}
	t := time.NewTicker(c.cfg.ResyncPeriod)
	defer t.Stop()
	last, force := "", true
	for {
		rs, err := c.compute(pods.Lister(), nss.Lister(), pols.Lister())
		if err == nil {
			key := fmt.Sprint(rs)
			if force || key != last {
				if err = Program(c.cfg.NetNS, rs); err == nil {
					if key != last {
						c.log.Info("network policy rules synced", "isolatedPods", summary(rs))
					}
					last, force = key, false
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			c.log.Warn("network policy sync", "err", err)
			force = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-kick:
			select { // coalesce bursts of pod status updates
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		case <-t.C:
			force = true
		}
	}
}

func trigger(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Controller) compute(pods corelisters.PodLister, nss corelisters.NamespaceLister, pols netlisters.NetworkPolicyLister) ([]PodRules, error) {
	p, err := pods.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	n, err := nss.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	np, err := pols.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	return Compute(c.cfg.NodeName, np, p, n), nil
}

func summary(rs []PodRules) string {
	var s []string
	for _, r := range rs {
		dir := ""
		if r.IngressIsolated {
			dir += "in"
		}
		if r.EgressIsolated {
			dir += "out"
		}
		s = append(s, r.Namespace+"/"+r.Name+"("+dir+")")
	}
	return strings.Join(s, " ")
}
