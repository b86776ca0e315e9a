// Package servicealloc allocates Service cluster IPs from the service CIDR
// and node ports from the node port range.
//
// Every allocated value is a reservation object in the replicated state,
// created in the same Raft entry as the Service write that takes it and
// deleted in the same entry as the write that frees it (as Kubernetes 1.33
// does with networking.k8s.io/v1 IPAddress objects). The FSM refuses a
// second create of the same key, so two masters that pick the same value
// at the same time cannot both win: the loser gets AlreadyExists on the
// reservation and the API server allocates again. Cluster IPs are stored as
// IPAddress objects (storage resource networking.k8s.io/ipaddresses, named
// by the address); node ports under the internal resource
// skiff.io/servicenodeports, named by the port number.
package servicealloc

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/state"
)

const (
	// IPResource is the storage resource of cluster IP reservations.
	IPResource = "networking.k8s.io/ipaddresses"
	// NodePortResource is the storage resource of node port reservations.
	NodePortResource = "skiff.io/servicenodeports"
	// DefaultServiceCIDR and the default node port range.
	DefaultServiceCIDR = "10.43.0.0/16"
	DefaultNodePortMin = 30000
	DefaultNodePortMax = 32767

	managedByLabel = "ipaddress.kubernetes.io/managed-by"
	managedBy      = "ipallocator.k8s.io"
	// ownerAnnotation holds the UID of the Service a reservation belongs to.
	ownerAnnotation = "skiff.io/service-uid"
)

// Allocator holds the ranges. It keeps no state of its own: what is taken
// is read from the snapshot it is given.
type Allocator struct {
	cidr             netip.Prefix
	portMin, portMax int
	rand             func(n int) int
	now              func() time.Time
}

// New returns an allocator for the IPv4 service CIDR and the node port
// range "MIN-MAX".
func New(cidr, ports string) (*Allocator, error) {
	if cidr == "" {
		cidr = DefaultServiceCIDR
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("service CIDR %q: %w", cidr, err)
	}
	if !p.Addr().Is4() || p.Bits() > 30 || p.Bits() < 8 {
		return nil, fmt.Errorf("service CIDR %q: must be an IPv4 prefix between /8 and /30", cidr)
	}
	lo, hi := DefaultNodePortMin, DefaultNodePortMax
	if ports != "" {
		if lo, hi, err = ParsePortRange(ports); err != nil {
			return nil, err
		}
	}
	return &Allocator{cidr: p.Masked(), portMin: lo, portMax: hi, rand: rand.IntN,
		now: func() time.Time { return time.Now().UTC().Truncate(time.Second) }}, nil
}

// ParsePortRange parses "MIN-MAX" (1-65535, MIN <= MAX).
func ParsePortRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("node port range %q: want MIN-MAX within 1-65535", s)
	}
	return lo, hi, nil
}

// CIDR is the service CIDR.
func (a *Allocator) CIDR() netip.Prefix { return a.cidr }

// PortRange is the node port range.
func (a *Allocator) PortRange() (int, int) { return a.portMin, a.portMax }

// FirstIP is the first usable address of the range, the `kubernetes`
// Service's cluster IP.
func (a *Allocator) FirstIP() netip.Addr { return a.cidr.Addr().Next() }

// IPKey and NodePortKey are the store keys of reservations.
func IPKey(ip string) state.Key { return state.Key{Resource: IPResource, Name: ip} }
func NodePortKey(port int32) state.Key {
	return state.Key{Resource: NodePortResource, Name: strconv.Itoa(int(port))}
}

// IsReservation reports whether k names a reservation.
func IsReservation(k state.Key) bool {
	return k.Resource == IPResource || k.Resource == NodePortResource
}

// allocatesIP reports whether a Service of this spec holds a cluster IP.
func allocatesIP(s *corev1.ServiceSpec) bool {
	return s.Type != corev1.ServiceTypeExternalName && s.ClusterIP != corev1.ClusterIPNone
}

// allocatesNodePorts reports whether a Service of this spec holds node ports.
func allocatesNodePorts(s *corev1.ServiceSpec) bool {
	switch s.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		return s.AllocateLoadBalancerNodePorts == nil || *s.AllocateLoadBalancerNodePorts
	}
	return false
}

// Allocate fills in the cluster IP and node ports svc needs (old is the
// stored Service on an update, nil on create) from what snap says is
// free, and checks the values the user asked for. Its errors are field
// errors for a 422.
func (a *Allocator) Allocate(snap *state.Snapshot, svc, old *corev1.Service) field.ErrorList {
	s := &svc.Spec
	sp := field.NewPath("spec")
	var errs field.ErrorList
	if s.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if old != nil && s.ClusterIP == "" && old.Spec.Type != corev1.ServiceTypeExternalName {
		// A client that leaves the cluster IP out keeps it.
		s.ClusterIP, s.ClusterIPs = old.Spec.ClusterIP, old.Spec.ClusterIPs
	}
	if s.ClusterIP == "" && len(s.ClusterIPs) > 0 {
		s.ClusterIP = s.ClusterIPs[0] // asked for through clusterIPs only
	}
	owner := ownerOf(svc, old)
	if s.ClusterIP != corev1.ClusterIPNone {
		if s.ClusterIP == "" {
			ip, ok := a.freeIP(snap)
			if !ok {
				return append(errs, field.InternalError(sp.Child("clusterIPs"),
					fmt.Errorf("failed to allocate a serviceIP: range is full")))
			}
			s.ClusterIP = ip.String()
		} else if old == nil || old.Spec.ClusterIP != s.ClusterIP {
			if msg := a.checkIP(snap, s.ClusterIP, owner); msg != "" {
				errs = append(errs, field.Invalid(sp.Child("clusterIPs").Index(0), s.ClusterIP,
					fmt.Sprintf("failed to allocate IP %s: %s", s.ClusterIP, msg)))
			}
		}
		s.ClusterIPs = []string{s.ClusterIP}
		if len(s.IPFamilies) == 0 {
			s.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		}
		if s.IPFamilyPolicy == nil {
			p := corev1.IPFamilyPolicySingleStack
			s.IPFamilyPolicy = &p
		}
	}
	if !allocatesNodePorts(s) {
		for i := range s.Ports {
			if s.Type == corev1.ServiceTypeClusterIP {
				s.Ports[i].NodePort = 0
			}
		}
		return errs
	}
	held := map[int32]bool{} // ports this Service had, or took already
	if old != nil && allocatesNodePorts(&old.Spec) {
		for _, p := range old.Spec.Ports {
			if p.NodePort != 0 {
				held[p.NodePort] = true
			}
		}
	}
	// Ports the client left out keep the node port they had (same port
	// number and protocol, as kube-apiserver does).
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.NodePort != 0 || old == nil {
			continue
		}
		for _, op := range old.Spec.Ports {
			if op.NodePort != 0 && op.Port == p.Port && op.Protocol == p.Protocol {
				p.NodePort = op.NodePort
				break
			}
		}
	}
	taken := map[int32]bool{} // in this Service
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.NodePort == 0 {
			continue
		}
		if !held[p.NodePort] && !taken[p.NodePort] {
			if msg := a.checkPort(snap, p.NodePort, owner); msg != "" {
				errs = append(errs, field.Invalid(sp.Child("ports").Index(i).Child("nodePort"), p.NodePort, msg))
			}
		}
		taken[p.NodePort] = true
	}
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.NodePort != 0 {
			continue
		}
		port, ok := a.freePort(snap, taken)
		if !ok {
			return append(errs, field.InternalError(sp.Child("ports").Index(i).Child("nodePort"),
				fmt.Errorf("failed to allocate a nodePort: range is full")))
		}
		p.NodePort = port
		taken[port] = true
	}
	return errs
}

// checkIP says why ip cannot be given to the Service owner, or "".
func (a *Allocator) checkIP(snap *state.Snapshot, ip string, owner types.UID) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return "not a valid IP address"
	}
	if !a.usable(addr) {
		return fmt.Sprintf("the provided IP (%s) is not in the valid range. The range of valid IPs is %s", ip, a.cidr)
	}
	if o := snap.Get(IPKey(addr.String())); o != nil && reservationOwner(o) != owner {
		return "provided IP is already allocated"
	}
	return ""
}

func (a *Allocator) checkPort(snap *state.Snapshot, port int32, owner types.UID) string {
	if int(port) < a.portMin || int(port) > a.portMax {
		return fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %d-%d", a.portMin, a.portMax)
	}
	if o := snap.Get(NodePortKey(port)); o != nil && reservationOwner(o) != owner {
		return "provided port is already allocated"
	}
	return ""
}

// usable reports whether addr is in the range and not its network or
// broadcast address.
func (a *Allocator) usable(addr netip.Addr) bool {
	if !a.cidr.Contains(addr) || addr == a.cidr.Addr() {
		return false
	}
	return addr != a.last()
}

func (a *Allocator) last() netip.Addr {
	b := a.cidr.Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-a.cidr.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// freeIP picks a free address at random, first in the upper part of the
// range and then in the lower one, which is left to addresses users ask
// for (the static band of Kubernetes' allocator: 1/16 of the range, at
// least 16 and at most 256 addresses).
func (a *Allocator) freeIP(snap *state.Snapshot) (netip.Addr, bool) {
	size := 1<<(32-a.cidr.Bits()) - 2 // usable addresses: offsets 1..size
	static := min(max(16, size/16), 256)
	if static >= size {
		static = 0
	}
	base := a.cidr.Addr().As4()
	at := func(off int) netip.Addr {
		b := base
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(off))
		return netip.AddrFrom4(b)
	}
	pick := func(lo, n int) (netip.Addr, bool) {
		if n <= 0 {
			return netip.Addr{}, false
		}
		start := a.rand(n)
		for i := 0; i < n; i++ {
			ip := at(lo + (start+i)%n)
			if snap.Get(IPKey(ip.String())) == nil {
				return ip, true
			}
		}
		return netip.Addr{}, false
	}
	if ip, ok := pick(1+static, size-static); ok {
		return ip, true
	}
	return pick(1, static)
}

func (a *Allocator) freePort(snap *state.Snapshot, taken map[int32]bool) (int32, bool) {
	n := a.portMax - a.portMin + 1
	start := a.rand(n)
	for i := 0; i < n; i++ {
		p := int32(a.portMin + (start+i)%n)
		if !taken[p] && snap.Get(NodePortKey(p)) == nil {
			return p, true
		}
	}
	return 0, false
}

// ownerOf is the UID of the Service being written (an update's body may
// leave it out).
func ownerOf(svc, old *corev1.Service) types.UID {
	if old != nil {
		return old.UID
	}
	return svc.UID
}

// Holdings are the reservation keys a Service holds.
func Holdings(svc *corev1.Service) []state.Key {
	if svc == nil {
		return nil
	}
	var keys []state.Key
	s := &svc.Spec
	if allocatesIP(s) {
		for _, ip := range s.ClusterIPs {
			if addr, err := netip.ParseAddr(ip); err == nil {
				keys = append(keys, IPKey(addr.String()))
			}
		}
		if len(s.ClusterIPs) == 0 && s.ClusterIP != "" {
			if addr, err := netip.ParseAddr(s.ClusterIP); err == nil {
				keys = append(keys, IPKey(addr.String()))
			}
		}
	}
	if allocatesNodePorts(s) {
		seen := map[int32]bool{}
		for _, p := range s.Ports {
			if p.NodePort != 0 && !seen[p.NodePort] {
				seen[p.NodePort] = true
				keys = append(keys, NodePortKey(p.NodePort))
			}
		}
	}
	return keys
}

// Mutations are the reservation writes to propose with the Service write
// that turns old into svc (old nil: create; svc nil: delete): creates for
// what svc takes and deletes for what it lets go. A create of a key that
// snap shows as held by svc already is left out.
func (a *Allocator) Mutations(snap *state.Snapshot, svc, old *corev1.Service) ([]fsm.Mutation, error) {
	oldKeys := map[state.Key]bool{}
	for _, k := range Holdings(old) {
		oldKeys[k] = true
	}
	var muts []fsm.Mutation
	newKeys := map[state.Key]bool{}
	for _, k := range Holdings(svc) {
		newKeys[k] = true
		if cur := snap.Get(k); cur != nil && reservationOwner(cur) == ownerOf(svc, old) {
			continue
		}
		if k.Resource == IPResource && !a.cidr.Contains(netip.MustParseAddr(k.Name)) {
			continue // an address from another service CIDR (the range changed)
		}
		m, err := a.reserve(k, svc, ownerOf(svc, old))
		if err != nil {
			return nil, err
		}
		muts = append(muts, m)
	}
	var ownerUID types.UID
	if old != nil {
		ownerUID = old.UID
	}
	for _, k := range Holdings(old) {
		if newKeys[k] {
			continue
		}
		if cur := snap.Get(k); cur != nil && reservationOwner(cur) == ownerUID {
			muts = append(muts, Release(cur))
		}
	}
	return muts, nil
}

// Release is the delete of a stored reservation (conditional on it being
// the one read).
func Release(o *state.Object) fsm.Mutation {
	return fsm.Mutation{Op: fsm.OpDelete, Key: o.Key,
		Preconditions: &fsm.Preconditions{UID: o.UID, ResourceVersion: o.ModifyIndex}}
}

// reserve makes the create of reservation k for svc.
func (a *Allocator) reserve(k state.Key, svc *corev1.Service, owner types.UID) (fsm.Mutation, error) {
	uid := uuid.NewString()
	meta := metav1.ObjectMeta{
		Name: k.Name, UID: types.UID(uid), CreationTimestamp: metav1.NewTime(a.now()),
		Labels:      map[string]string{managedByLabel: managedBy},
		Annotations: map[string]string{ownerAnnotation: string(owner)},
	}
	var obj any
	if k.Resource == IPResource {
		obj = &networkingv1.IPAddress{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "IPAddress"},
			ObjectMeta: meta,
			Spec: networkingv1.IPAddressSpec{ParentRef: &networkingv1.ParentReference{
				Resource: "services", Namespace: svc.Namespace, Name: svc.Name}},
		}
	} else {
		obj = &nodePortReservation{
			TypeMeta:   metav1.TypeMeta{APIVersion: "skiff.io/v1", Kind: "ServiceNodePort"},
			ObjectMeta: meta,
			Service:    networkingv1.ParentReference{Resource: "services", Namespace: svc.Namespace, Name: svc.Name},
		}
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return fsm.Mutation{}, err
	}
	return fsm.Mutation{Op: fsm.OpCreate, Key: k, UID: uid, Object: data}, nil
}

// nodePortReservation is the stored form of a node port reservation.
type nodePortReservation struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Service           networkingv1.ParentReference `json:"service"`
}

// reservationMeta is the part of a stored reservation's metadata the
// allocator reads.
type reservationMeta struct {
	Metadata struct {
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
}

func readReservation(o *state.Object) reservationMeta {
	var r reservationMeta
	_ = json.Unmarshal(o.Data, &r) // a body the allocator cannot read has no owner
	return r
}

// reservationOwner returns the UID of the Service holding reservation o.
func reservationOwner(o *state.Object) types.UID {
	return types.UID(readReservation(o).Metadata.Annotations[ownerAnnotation])
}

// allocated reports whether o is a reservation the allocator made (an
// IPAddress a client created itself is not: it only makes its address
// taken).
func allocated(o *state.Object) bool {
	return o.Key.Resource != IPResource || readReservation(o).Metadata.Labels[managedByLabel] == managedBy
}

// Missing returns the creates of the reservations svc holds that are not
// in snap: an IPAddress a client deleted while its Service still uses the
// address comes back, as kube-apiserver's repair loop recreates it.
func (a *Allocator) Missing(snap *state.Snapshot, svc *corev1.Service) ([]fsm.Mutation, error) {
	var muts []fsm.Mutation
	for _, k := range Holdings(svc) {
		if snap.Get(k) != nil {
			continue
		}
		if k.Resource == IPResource && !a.cidr.Contains(netip.MustParseAddr(k.Name)) {
			continue
		}
		m, err := a.reserve(k, svc, svc.UID)
		if err != nil {
			return nil, err
		}
		muts = append(muts, m)
	}
	return muts, nil
}

// Owner returns the UID of the Service holding reservation o.
func Owner(o *state.Object) types.UID { return reservationOwner(o) }

// Orphans lists the reservations the allocator made whose Service (by UID)
// is gone or holds them no longer: what a delete that bypassed the allocator (a namespace
// removed with its contents, a Service held by finalizers) left behind.
func Orphans(snap *state.Snapshot, decode func(*state.Object) (*corev1.Service, error)) []*state.Object {
	var out []*state.Object
	for _, res := range []string{IPResource, NodePortResource} {
		snap.List(res, "", "", func(o *state.Object) bool {
			if !allocated(o) {
				return true
			}
			owner := reservationOwner(o)
			so := snap.GetByUID(string(owner))
			if so == nil || so.Key.Resource != "services" {
				out = append(out, o)
				return true
			}
			svc, err := decode(so)
			if err != nil {
				return true
			}
			for _, k := range Holdings(svc) {
				if k == o.Key {
					return true
				}
			}
			out = append(out, o)
			return true
		})
	}
	return out
}
