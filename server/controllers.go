package server

import (
	"context"
	"sync"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/server/admission"
	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/controller/certificates"
	"github.com/skiff-io/skiff/server/controller/manager"
	"github.com/skiff-io/skiff/server/registry"
)

// startControllers runs the controllers (server/controller/manager) until
// ctx ends (leadership lost): they write over the loopback client cfg and
// read through shared (nil: informers of their own over cfg).
func (s *Server) startControllers(ctx context.Context, wg *sync.WaitGroup, cfg *rest.Config, shared informers.SharedInformerFactory) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		opts := s.cfg.Controllers
		opts.Informers = shared
		if opts.Logger == nil {
			opts.Logger = s.cfg.Logger
		}
		opts.Gossip = gossipHealth{s.gossip}
		opts.RootCA, opts.TokenSigner = s.ca.CertPEM, s.saTokens
		opts.CSRSigner = &certificates.Config{Signer: s.ca, Lifetime: s.cfg.NodeCertLifetime,
			IsMaster: func(name string) bool { _, ok := s.lookupMember(name); return ok }}
		if err := manager.Run(ctx, cfg, opts); err != nil {
			s.log.Error("controllers stopped", "err", err)
		}
	}()
}

// admissionChain is the API server's admission (server/admission) over
// the local state.
func (s *Server) admissionChain(authz *auth.Authorizer) *admission.Chain {
	c := admission.New(raftStore{s}, registry.New(), s.cfg.Logger).WithRBAC(authz)
	if s.cfg.PodSecurity != nil {
		if err := c.SetPodSecurity(s.cfg.PodSecurity); err != nil {
			panic(err) // setDefaults validated it
		}
	}
	if alloc, err := s.serviceAllocator(); err == nil {
		c.SetServiceAllocator(alloc)
	}
	return c
}
