package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/rest"

	"github.com/skiff-io/skiff/fsm/state"
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
		opts.HPA.Metrics = s.hpaMetricsSource()
		opts.RootCA, opts.TokenSigner = s.ca.CertPEM, s.saTokens
		opts.CSRSigner = &certificates.Config{Signer: s.ca, Lifetime: s.cfg.NodeCertLifetime,
			IsMaster:          func(name string) bool { _, ok := s.lookupMember(name); return ok },
			CheckServingNames: s.checkServingNames}
		if err := manager.Run(ctx, cfg, opts); err != nil {
			s.log.Error("controllers stopped", "err", err)
		}
	}()
}

// admissionChain is the API server's admission (server/admission) over
// the local state; reg is the API's registry (its custom resources are
// admission policies' targets and params).
func (s *Server) admissionChain(authz *auth.Authorizer, reg *registry.Registry) *admission.Chain {
	c := admission.New(raftStore{s}, reg, s.cfg.Logger).WithRBAC(authz)
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

// checkServingNames refuses, in a node's serving certificate, the names
// that would let the node pose as a master or as the API: a master's name
// or address, the kubernetes Service's names, localhost, any *.svc name,
// an address of the Service range. (kube-controller-manager approves no
// serving certificate by itself; Skiff does, for names that are a node's.)
func (s *Server) checkServingNames(node string, dns []string, ips []net.IP) error {
	masters := map[string]bool{}
	masterIPs := map[string]bool{}
	snap := s.fsm.Read()
	snap.List(membersResource, "", "", func(o *state.Object) bool {
		var m Member
		if json.Unmarshal(o.Data, &m) == nil {
			masters[strings.ToLower(m.Name)] = true
			for _, a := range []string{m.RaftAddress, strings.TrimPrefix(m.APIURL, "https://")} {
				if h, _, err := net.SplitHostPort(a); err == nil {
					masterIPs[h] = true
				}
			}
		}
		return true
	})
	for _, d := range dns {
		l := strings.ToLower(strings.TrimSuffix(d, "."))
		switch {
		case l == "localhost", l == "kubernetes", strings.HasPrefix(l, "kubernetes."),
			strings.HasSuffix(l, ".svc"), strings.Contains(l, ".svc."):
			return fmt.Errorf("serving certificate of node %s names %q, which is the API's or local", node, d)
		case masters[l] && l != strings.ToLower(node):
			return fmt.Errorf("serving certificate of node %s names master %q", node, d)
		}
	}
	_, svc, _ := net.ParseCIDR(s.cfg.ServiceCIDR)
	for _, ip := range ips {
		switch {
		case ip.IsUnspecified():
			return fmt.Errorf("serving certificate of node %s names the unspecified address %s", node, ip)
		case masterIPs[ip.String()]:
			return fmt.Errorf("serving certificate of node %s names %s, a master's address", node, ip)
		case svc != nil && svc.Contains(ip):
			return fmt.Errorf("serving certificate of node %s names %s, in the Service range %s", node, ip, s.cfg.ServiceCIDR)
		}
	}
	return nil
}
