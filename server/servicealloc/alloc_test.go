package servicealloc

import (
	"context"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-io/skiff/fsm"
	"github.com/skiff-io/skiff/fsm/fsmtest"
	"github.com/skiff-io/skiff/fsm/state"
)

func apply(t *testing.T, s *fsmtest.FakeRaftStore, muts []fsm.Mutation) *fsm.Result {
	t.Helper()
	entry, err := fsm.EncodeBatch(fsm.Batch{Mutations: muts})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Apply(context.Background(), entry)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func snap(t *testing.T, s *fsmtest.FakeRaftStore) *state.Snapshot {
	t.Helper()
	sn, err := s.Read(context.Background(), false, 0)
	if err != nil {
		t.Fatal(err)
	}
	return sn
}

func TestParseAndRanges(t *testing.T) {
	for _, bad := range []string{"10.43.0.0/31", "fd00::/64", "x"} {
		if _, err := New(bad, ""); err == nil {
			t.Errorf("service CIDR %q accepted", bad)
		}
	}
	for _, bad := range []string{"30000", "3-2", "0-10", "1-70000"} {
		if _, err := New("", bad); err == nil {
			t.Errorf("port range %q accepted", bad)
		}
	}
	a, err := New("10.96.0.0/12", "20000-20010")
	if err != nil {
		t.Fatal(err)
	}
	if a.FirstIP() != netip.MustParseAddr("10.96.0.1") {
		t.Fatalf("first IP %s", a.FirstIP())
	}
	if lo, hi := a.PortRange(); lo != 20000 || hi != 20010 {
		t.Fatalf("ports %d-%d", lo, hi)
	}
}

// Automatic picks avoid the low (static) band while the rest has room,
// and then take it; a full range is an error.
func TestFreeIPBands(t *testing.T) {
	a, err := New("10.43.0.0/27", "30000-30001") // 30 usable; static band 16
	if err != nil {
		t.Fatal(err)
	}
	s := fsmtest.NewFakeRaftStore(fsm.Options{})
	got := map[netip.Addr]bool{}
	for i := 0; i < 30; i++ {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "d", Name: "s", UID: "u"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}
		if errs := a.Allocate(snap(t, s), svc, nil); len(errs) > 0 {
			t.Fatalf("pick %d: %v", i, errs)
		}
		ip := netip.MustParseAddr(svc.Spec.ClusterIP)
		if i < 14 && ip.As4()[3] <= 16 {
			t.Fatalf("pick %d took %s from the static band while the upper band had room", i, ip)
		}
		if got[ip] || ip.As4()[3] == 0 || ip.As4()[3] == 31 {
			t.Fatalf("pick %d: %s reused or not usable", i, ip)
		}
		got[ip] = true
		svc.UID = types.UID("u" + svc.Spec.ClusterIP)
		muts, err := a.Mutations(snap(t, s), svc, nil)
		if err != nil || len(muts) != 1 {
			t.Fatalf("mutations %v %v", muts, err)
		}
		if res := apply(t, s, muts); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}
	if errs := a.Allocate(snap(t, s), svc, nil); len(errs) != 1 {
		t.Fatalf("full range: %v", errs)
	}
}

// Orphans: a reservation whose Service is gone, or no longer holds it.
func TestOrphans(t *testing.T) {
	a, _ := New("", "")
	s := fsmtest.NewFakeRaftStore(fsm.Options{})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "d", Name: "s", UID: "svc-uid"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.43.0.50", ClusterIPs: []string{"10.43.0.50"},
			Ports: []corev1.ServicePort{{Port: 80, NodePort: 30050}}}}
	muts, err := a.Mutations(snap(t, s), svc, nil)
	if err != nil || len(muts) != 2 {
		t.Fatalf("%v %v", muts, err)
	}
	gone := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "d", Name: "gone", UID: "gone-uid"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.43.0.51"}}
	more, _ := a.Mutations(snap(t, s), gone, nil)
	data := []byte(`{"metadata":{"name":"s","namespace":"d","uid":"svc-uid"},"spec":{"type":"ClusterIP","clusterIP":"10.43.0.50","clusterIPs":["10.43.0.50"],"ports":[{"port":80,"nodePort":30050}]}}`)
	create := fsm.Mutation{Op: fsm.OpCreate, Key: state.Key{Resource: "services", Namespace: "d", Name: "s"}, UID: "svc-uid", Object: data}
	if res := apply(t, s, append(append([]fsm.Mutation{create}, muts...), more...)); res.Err != nil {
		t.Fatal(res.Err)
	}
	decode := func(o *state.Object) (*corev1.Service, error) {
		// The stored Service is now ClusterIP: its node port is an orphan.
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{UID: "svc-uid"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP,
			ClusterIP: "10.43.0.50", ClusterIPs: []string{"10.43.0.50"}, Ports: []corev1.ServicePort{{Port: 80, NodePort: 30050}}}}, nil
	}
	var keys []string
	for _, o := range Orphans(snap(t, s), decode) {
		keys = append(keys, o.Key.Resource+"/"+o.Key.Name)
	}
	if len(keys) != 2 || keys[0] != IPResource+"/10.43.0.51" || keys[1] != NodePortResource+"/30050" {
		t.Fatalf("orphans %v", keys)
	}
}

// TestClientIPAddresses: an IPAddress a client created (no managed-by
// label) is not an orphan of the allocator, and makes its address taken;
// a reservation deleted while its Service holds the address is recreated
// by Missing.
func TestClientIPAddresses(t *testing.T) {
	a, _ := New("", "")
	s := fsmtest.NewFakeRaftStore(fsm.Options{})
	user := fsm.Mutation{Op: fsm.OpCreate, Key: IPKey("10.43.0.60"), UID: "user-ip",
		Object: []byte(`{"apiVersion":"networking.k8s.io/v1","kind":"IPAddress","metadata":{"name":"10.43.0.60","uid":"user-ip"},"spec":{"parentRef":{"group":"mygroup","resource":"things","name":"x"}}}`)}
	if res := apply(t, s, []fsm.Mutation{user}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if o := Orphans(snap(t, s), func(*state.Object) (*corev1.Service, error) { return nil, nil }); len(o) != 0 {
		t.Fatalf("a client's IPAddress is an orphan: %v", o[0].Key)
	}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "d", Name: "s", UID: "svc-uid"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.43.0.60"}}
	if errs := a.Allocate(snap(t, s), svc, nil); len(errs) != 1 || errs[0].Field != "spec.clusterIPs[0]" {
		t.Fatalf("an address a client reserved was given to a Service: %v", errs)
	}
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "10.43.0.61", []string{"10.43.0.61"}
	muts, err := a.Missing(snap(t, s), svc)
	if err != nil || len(muts) != 1 || muts[0].Key != IPKey("10.43.0.61") {
		t.Fatalf("missing: %v %v", muts, err)
	}
	if res := apply(t, s, muts); res.Err != nil {
		t.Fatal(res.Err)
	}
	if o := snap(t, s).Get(IPKey("10.43.0.61")); o == nil || Owner(o) != "svc-uid" {
		t.Fatal("recreated reservation")
	}
	if muts, _ := a.Missing(snap(t, s), svc); len(muts) != 0 {
		t.Fatalf("nothing is missing now: %v", muts)
	}
}
