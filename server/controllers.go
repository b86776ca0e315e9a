package server

import (
	"context"
	"sync"

	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/controller/manager"
	"github.com/skiff-io/skiff/server/registry"
)

// startControllers runs the controllers (server/controller/manager) over
// a loopback client until ctx ends (leadership lost).
func (s *Server) startControllers(ctx context.Context, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		cfg, err := s.loopbackConfig("system:kube-controller-manager")
		if err != nil {
			s.log.Error("controllers not started", "err", err)
			return
		}
		opts := s.cfg.Controllers
		if opts.Logger == nil {
			opts.Logger = s.cfg.Logger
		}
		opts.RootCA, opts.TokenSigner = s.ca.CertPEM, s.saTokens
		if err := manager.Run(ctx, cfg, opts); err != nil {
			s.log.Error("controllers stopped", "err", err)
		}
	}()
}

// admissionChain is the API server's admission (server/admission) over
// the local state.
func (s *Server) admissionChain(authz *auth.Authorizer) *admission.Chain {
	return admission.New(raftStore{s}, registry.New(), s.cfg.Logger).WithRBAC(authz)
}
