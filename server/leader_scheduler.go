package server

import (
	"context"
	"sync"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-io/skiff/server/scheduler"
)

// startScheduler runs the scheduler (server/scheduler) until ctx ends
// (leadership lost); the next leader's scheduler picks up whatever is
// still unbound. It binds over a loopback client and reads through shared
// (nil: informers of its own over that client).
func (s *Server) startScheduler(ctx context.Context, wg *sync.WaitGroup, shared informers.SharedInformerFactory) {
	if s.cfg.DisableScheduler {
		s.log.Info("scheduler disabled (--disable-scheduler)")
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		cfg, err := s.loopbackConfig("system:kube-scheduler")
		if err != nil {
			s.log.Error("scheduler not started", "err", err)
			return
		}
		// Protobuf request bodies (bindings) are cheaper to encode and
		// decode; responses (and watches, without the shared informers)
		// are JSON.
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		cfg.AcceptContentTypes = "application/json"
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			s.log.Error("scheduler not started", "err", err)
			return
		}
		sched, err := scheduler.New(scheduler.Config{Client: cs, Informers: shared, Logger: s.cfg.Logger.With("component", "scheduler"),
			Metrics: s.cmetrics.scheduler})
		if err != nil {
			s.log.Error("scheduler not started", "err", err)
			return
		}
		if err := sched.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("scheduler stopped", "err", err)
		}
	}()
}
