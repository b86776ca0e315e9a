package server

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
	"github.com/skiff-io/skiff/server/registry"
	"github.com/skiff-io/skiff/server/servicealloc"
)

// The `kubernetes` Service in `default` points at the masters' API: its
// cluster IP is the first address of the service CIDR, port 443, and the
// leader keeps its Endpoints and EndpointSlice listing the masters whose
// /readyz answers (as kube-apiserver's endpoint reconciler does).
const (
	kubernetesService  = "kubernetes"
	kubernetesSyncTick = 5 * time.Second
	reservationRepair  = 30 * time.Second
)

// serviceAllocator is the cluster IP and node port allocator of the
// configured ranges.
func (s *Server) serviceAllocator() (*servicealloc.Allocator, error) {
	return servicealloc.New(s.cfg.ServiceCIDR, s.cfg.NodePortRange)
}

// kubernetesServiceLoop keeps the `kubernetes` Service and its endpoints
// current and frees reservations left without a Service, until ctx ends.
func (s *Server) kubernetesServiceLoop(ctx context.Context) {
	log := s.log.With("loop", "kubernetes-service")
	alloc, err := s.serviceAllocator()
	if err != nil {
		log.Error("kubernetes Service not maintained", "err", err)
		return
	}
	reg := registry.New()
	var lastRepair time.Time
	for {
		if err := s.syncKubernetesService(ctx, reg, alloc); err != nil && ctx.Err() == nil {
			log.Warn("sync kubernetes Service", "err", err)
		}
		if err := s.ensureDefaultServiceCIDR(ctx, reg, alloc); err != nil && ctx.Err() == nil {
			log.Warn("default ServiceCIDR", "err", err)
		}
		if time.Since(lastRepair) >= reservationRepair {
			lastRepair = time.Now()
			if err := s.repairReservations(ctx, reg, alloc); err != nil && ctx.Err() == nil {
				log.Warn("repair service reservations", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(kubernetesSyncTick):
		}
	}
}

func (s *Server) syncKubernetesService(ctx context.Context, reg *registry.Registry, alloc *servicealloc.Allocator) error {
	svcKind, _ := reg.Lookup("", "v1", "services")
	key := svcKind.Key(metav1.NamespaceDefault, kubernetesService)
	snap := s.fsm.Read()
	if snap.Get(key) == nil {
		if err := s.createKubernetesService(ctx, svcKind, alloc, snap); err != nil {
			return err
		}
	}
	statuses, err := s.memberStatuses(ctx)
	if err != nil {
		return err
	}
	ready := map[int][]string{}    // port -> ready addresses
	notReady := map[int][]string{} // port -> the others
	for _, m := range statuses {
		host, port, ok := apiHostPort(m.APIURL)
		if !ok {
			continue
		}
		if m.State == "ready" {
			ready[port] = append(ready[port], host)
		} else {
			notReady[port] = append(notReady[port], host)
		}
	}
	epKind, _ := reg.Lookup("", "v1", "endpoints")
	sliceKind, _ := reg.Lookup("discovery.k8s.io", "v1", "endpointslices")
	if err := s.putObject(ctx, epKind, kubernetesEndpoints(ready, notReady)); err != nil {
		return err
	}
	if err := s.putObject(ctx, sliceKind, kubernetesSlice(ready, notReady)); err != nil {
		return err
	}
	return nil
}

func apiHostPort(apiURL string) (string, int, bool) {
	u, err := url.Parse(apiURL)
	if err != nil {
		return "", 0, false
	}
	host, p, err := net.SplitHostPort(u.Host)
	if err != nil || net.ParseIP(host) == nil {
		return "", 0, false
	}
	port, err := strconv.Atoi(p)
	return host, port, err == nil
}

// createKubernetesService creates the Service with its cluster IP
// reservation in one entry.
func (s *Server) createKubernetesService(ctx context.Context, kind *registry.Kind, alloc *servicealloc.Allocator, snap *state.Snapshot) error {
	uid := uuid.NewString()
	cluster := corev1.ServiceInternalTrafficPolicyCluster
	single := corev1.IPFamilyPolicySingleStack
	ip := alloc.FirstIP().String()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: kubernetesService, Namespace: metav1.NamespaceDefault, UID: types.UID(uid),
			CreationTimestamp: metav1.NewTime(time.Now().UTC().Truncate(time.Second)),
			Labels:            map[string]string{"component": "apiserver", "provider": "kubernetes"},
		},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, IPFamilyPolicy: &single,
			Ports: []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443,
				TargetPort: intstr.FromInt32(int32(s.cfg.APIPort))}},
			SessionAffinity: corev1.ServiceAffinityNone, InternalTrafficPolicy: &cluster,
		},
	}
	if o := snap.Get(servicealloc.IPKey(ip)); o != nil {
		return fmt.Errorf("the first service IP %s is held by another Service (uid %s)", ip, servicealloc.Owner(o))
	}
	data, err := kind.Encode(svc)
	if err != nil {
		return err
	}
	muts := []fsm.Mutation{{Op: fsm.OpCreate, Key: kind.Key(svc.Namespace, svc.Name), UID: uid, Object: data}}
	extra, err := alloc.Mutations(snap, svc, nil)
	if err != nil {
		return err
	}
	res, err := s.applyBatch(ctx, append(muts, extra...))
	if err != nil {
		return err
	}
	if res.Err != nil && res.Err.Reason != fsm.ReasonAlreadyExists {
		return res.Err
	}
	if res.Err == nil {
		s.log.Info("created the kubernetes Service", "clusterIP", ip)
	}
	return nil
}

// putObject creates or replaces obj (Endpoints, EndpointSlice) when its
// stored form differs, keeping UID and creation time.
func (s *Server) putObject(ctx context.Context, kind *registry.Kind, obj runtime.Object) error {
	m := mustMeta(obj)
	key := kind.Key(m.GetNamespace(), m.GetName())
	cur := s.fsm.Read().Get(key)
	var mut fsm.Mutation
	if cur == nil {
		uid := uuid.NewString()
		m.SetUID(types.UID(uid))
		m.SetCreationTimestamp(metav1.NewTime(time.Now().UTC().Truncate(time.Second)))
		data, err := kind.Encode(obj)
		if err != nil {
			return err
		}
		mut = fsm.Mutation{Op: fsm.OpCreate, Key: key, UID: uid, Object: data}
	} else {
		old, err := kind.Decode(cur)
		if err != nil {
			return err
		}
		om := mustMeta(old)
		m.SetUID(om.GetUID())
		m.SetCreationTimestamp(om.GetCreationTimestamp())
		data, err := kind.Encode(obj)
		if err != nil {
			return err
		}
		if string(data) == string(cur.Data) {
			return nil
		}
		mut = fsm.Mutation{Op: fsm.OpUpdate, Key: key, Object: data,
			Preconditions: &fsm.Preconditions{UID: cur.UID, ResourceVersion: cur.ModifyIndex}}
	}
	res, err := s.applyBatch(ctx, []fsm.Mutation{mut})
	if err != nil {
		return err
	}
	if res.Err != nil && res.Err.Reason != fsm.ReasonConflict && res.Err.Reason != fsm.ReasonAlreadyExists {
		return res.Err // a conflict is settled on the next pass
	}
	return nil
}

func mustMeta(obj runtime.Object) metav1.Object {
	m, ok := obj.(metav1.Object)
	if !ok {
		panic(fmt.Sprintf("%T has no object meta", obj))
	}
	return m
}

func (s *Server) applyBatch(ctx context.Context, muts []fsm.Mutation) (*fsm.Result, error) {
	var (
		entry []byte
		err   error
	)
	if len(muts) == 1 {
		entry, err = fsm.EncodeMutation(muts[0])
	} else {
		entry, err = fsm.EncodeBatch(fsm.Batch{Mutations: muts})
	}
	if err != nil {
		return nil, err
	}
	return s.apply(ctx, entry)
}

func sortedPorts(sets ...map[int][]string) []int {
	seen := map[int]bool{}
	var out []int
	for _, set := range sets {
		for p := range set {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	sort.Ints(out)
	return out
}

func kubernetesEndpoints(ready, notReady map[int][]string) *corev1.Endpoints {
	ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: kubernetesService, Namespace: metav1.NamespaceDefault,
		Labels: map[string]string{"endpointslice.kubernetes.io/skip-mirror": "true"}}}
	for _, port := range sortedPorts(ready, notReady) {
		ss := corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Name: "https", Port: int32(port), Protocol: corev1.ProtocolTCP}}}
		for _, ip := range sorted(ready[port]) {
			ss.Addresses = append(ss.Addresses, corev1.EndpointAddress{IP: ip})
		}
		for _, ip := range sorted(notReady[port]) {
			ss.NotReadyAddresses = append(ss.NotReadyAddresses, corev1.EndpointAddress{IP: ip})
		}
		ep.Subsets = append(ep.Subsets, ss)
	}
	return ep
}

// kubernetesSlice lists every master; one port per slice, so masters on
// other ports (tests run several on one address) are listed under the
// first port only when they share it. Skiff runs masters on one port in
// production; the slice carries the leader's.
func kubernetesSlice(ready, notReady map[int][]string) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: kubernetesService, Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{discoveryv1.LabelServiceName: kubernetesService}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	ports := sortedPorts(ready, notReady)
	if len(ports) == 0 {
		return sl
	}
	// The port most masters use.
	best := ports[0]
	for _, p := range ports {
		if len(ready[p])+len(notReady[p]) > len(ready[best])+len(notReady[best]) {
			best = p
		}
	}
	name, proto, port := "https", corev1.ProtocolTCP, int32(best)
	sl.Ports = []discoveryv1.EndpointPort{{Name: &name, Protocol: &proto, Port: &port}}
	add := func(ips []string, ok bool) {
		for _, ip := range sorted(ips) {
			r := ok
			sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip},
				Conditions: discoveryv1.EndpointConditions{Ready: &r, Serving: &r, Terminating: new(bool)}})
		}
	}
	add(ready[best], true)
	add(notReady[best], false)
	return sl
}

func sorted(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	return out
}

// repairReservations deletes cluster IP and node port reservations whose
// Service is gone (deleted with its namespace, or after finalizers), and
// recreates those a client deleted (an IPAddress) while their Service
// still holds the value.
func (s *Server) repairReservations(ctx context.Context, reg *registry.Registry, alloc *servicealloc.Allocator) error {
	svcKind, _ := reg.Lookup("", "v1", "services")
	decode := func(o *state.Object) (*corev1.Service, error) {
		obj, err := svcKind.Decode(o)
		if err != nil {
			return nil, err
		}
		return obj.(*corev1.Service), nil
	}
	snap := s.fsm.Read()
	for _, o := range servicealloc.Orphans(snap, decode) {
		res, err := s.applyBatch(ctx, []fsm.Mutation{servicealloc.Release(o)})
		if err != nil {
			return err
		}
		if res.Err == nil {
			s.log.Info("released service reservation", "key", o.Key)
		}
	}
	var missing []fsm.Mutation
	var decodeErr error
	snap.List(svcKind.StorageResource(), "", "", func(o *state.Object) bool {
		svc, err := decode(o)
		if err != nil {
			decodeErr = err
			return false
		}
		muts, err := alloc.Missing(snap, svc)
		if err != nil {
			decodeErr = err
			return false
		}
		missing = append(missing, muts...)
		return true
	})
	if decodeErr != nil {
		return decodeErr
	}
	for _, m := range missing {
		res, err := s.applyBatch(ctx, []fsm.Mutation{m})
		if err != nil {
			return err
		}
		if res.Err == nil {
			s.log.Info("recreated service reservation", "key", m.Key)
		}
	}
	return nil
}
