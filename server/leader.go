package server

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/fsm/state"
)

// systemNamespaces exist in every cluster.
var systemNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

// monitorLeadership starts leader-only work when this master becomes the
// leader and stops it when leadership is lost (Consul's pattern).
func (s *Server) monitorLeadership() {
	defer s.wg.Done()
	var stop chan struct{}
	var done chan struct{}
	stopWork := func() {
		if stop != nil {
			close(stop)
			<-done
			stop, done = nil, nil
			s.leaderReady.Store(false)
			s.log.Info("leadership lost: leader work stopped")
		}
	}
	for {
		select {
		case <-s.shutdownCh:
			stopWork()
			return
		case isLeader := <-s.leaderCh:
			if isLeader && s.cfg.Witness {
				go s.handOffLeadership()
			} else if isLeader && stop == nil {
				stop, done = make(chan struct{}), make(chan struct{})
				go func(stop, done chan struct{}) {
					defer close(done)
					s.leaderLoop(stop)
				}(stop, done)
			} else if !isLeader {
				stopWork()
			}
		}
	}
}

// leaderLoop is the one door for leader work: a Barrier first (so the FSM
// holds every committed entry), then establishLeadership, then wait.
func (s *Server) leaderLoop(stop <-chan struct{}) {
	for {
		if err := s.raft.Barrier(time.Minute).Error(); err != nil {
			s.log.Warn("leader barrier failed", "err", err)
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
				continue
			}
		}
		break
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-stop
		cancel()
	}()
	s.leaderReady.Store(true)
	s.log.Info("leadership established", "index", s.fsm.Index())
	for {
		err := s.establishLeadership(ctx)
		if err == nil {
			break
		}
		s.log.Warn("establish leadership", "err", err)
		select {
		case <-stop:
			return
		case <-time.After(time.Second):
		}
	}
	work := s.startLeaderWork(ctx)
	<-stop
	cancel()
	work.Wait()
}

// establishLeadership makes sure the cluster's fixed objects exist and that
// every voter's member record is current.
func (s *Server) establishLeadership(ctx context.Context) error {
	if err := s.putMember(ctx, s.self()); err != nil {
		return err
	}
	for _, ns := range systemNamespaces {
		if err := s.ensureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	if err := s.pruneMembers(ctx); err != nil {
		return err
	}
	// After the member pass, so that it runs as early as before: a master
	// joining meanwhile is recorded before it becomes a voter, and a
	// longer gap widens that window.
	for _, ns := range systemNamespaces {
		if err := s.ensureDefaultServiceAccount(ctx, ns); err != nil {
			return err
		}
	}
	// Before anything writes a Secret through the leader's own paths.
	if _, err := s.ensureEncryptionKey(ctx); err != nil {
		return fmt.Errorf("encryption key: %w", err)
	}
	if err := s.ensureDefaultIngressClass(ctx); err != nil {
		return err
	}
	if err := s.ensureDefaultStorageClass(ctx); err != nil {
		return fmt.Errorf("default storage class: %w", err)
	}
	if err := s.ensureFlowControlObjects(ctx); err != nil {
		return fmt.Errorf("flow control bootstrap objects: %w", err)
	}
	if s.monitoring != nil {
		if err := s.ensureMetricsRules(ctx); err != nil {
			return fmt.Errorf("metrics rules: %w", err)
		}
	}
	return s.ensureDefaultRBAC(ctx)
}

// ensureNamespace creates a namespace if it does not exist.
func (s *Server) ensureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/metadata.name": name}},
		Status:     corev1.NamespaceStatus{Phase: corev1.NamespaceActive},
	}
	created, err := s.createIfAbsent(ctx, state.Key{Resource: "namespaces", Name: name}, &ns.ObjectMeta,
		metav1.NewTime(time.Now().UTC().Truncate(time.Second)), ns)
	if created {
		s.log.Info("created namespace", "name", name)
	}
	return err
}

// pruneMembers deletes records of masters no longer in the configuration.
func (s *Server) pruneMembers(ctx context.Context) error {
	cf := s.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	in := map[string]bool{}
	for _, srv := range cf.Configuration().Servers {
		in[string(srv.ID)] = true
	}
	var stale []string
	s.fsm.Read().List(membersResource, "", "", func(o *state.Object) bool {
		if !in[o.Key.Name] {
			stale = append(stale, o.Key.Name)
		}
		return true
	})
	for _, name := range stale {
		if err := s.deleteMember(ctx, name); err != nil {
			return err
		}
	}
	return nil
}
