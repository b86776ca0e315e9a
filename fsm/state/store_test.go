package state_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/skiff-io/skiff/fsm/state"
)

func key(resource, ns, name string) state.Key {
	return state.Key{Resource: resource, Namespace: ns, Name: name}
}

// fixture is a store holding, in key order:
//
//	apps/deployments  a/d1
//	configmaps        a/cm1 a/cm2 a/cm3
//	configmaps        ab/cm1   (a namespace sharing a prefix with a)
//	configmaps        b/cm1 b/cm2
//	configmapsx       a/x1     (a resource sharing a prefix with configmaps)
//	nodes             n1 n2    (cluster-scoped)
//	pods              a/p1
//
// put in a shuffled order, each with a UID and its position as data.
var fixtureKeys = []state.Key{
	key("nodes", "", "n2"),
	key("configmaps", "b", "cm2"),
	key("configmaps", "a", "cm3"),
	key("configmaps", "a", "cm1"),
	key("apps/deployments", "a", "d1"),
	key("configmaps", "ab", "cm1"),
	key("configmapsx", "a", "x1"),
	key("configmaps", "b", "cm1"),
	key("pods", "a", "p1"),
	key("nodes", "", "n1"),
	key("configmaps", "a", "cm2"),
}

func uidOf(k state.Key) string { return "uid-" + strings.ReplaceAll(k.String(), "/", "-") }

func fixture(t *testing.T) *state.Store {
	t.Helper()
	s := state.NewStore()
	w := s.Write()
	for i, k := range fixtureKeys {
		w.Put(state.NewObject(k, uidOf(k), []byte(fmt.Sprintf(`{"i":%d}`, i)), uint64(i+1), uint64(i+1)))
	}
	w.SetIndex(uint64(len(fixtureKeys)))
	w.Commit()
	return s
}

// list collects List's keys, calling it with the given arguments.
func list(snap *state.Snapshot, resource, ns, after string, limit int) []string {
	var out []string
	snap.List(resource, ns, after, func(o *state.Object) bool {
		out = append(out, o.Key.String())
		return limit <= 0 || len(out) < limit
	})
	return out
}

func sameStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

func TestNewObject(t *testing.T) {
	k := key("configmaps", "a", "cm1")
	o := state.NewObject(k, "u", []byte(`{}`), 3, 7)
	if o.ID != k.ID() || o.Key != k || o.Namespace != "a" || o.UID != "u" || o.CreateIndex != 3 || o.ModifyIndex != 7 || string(o.Data) != `{}` {
		t.Fatalf("NewObject = %+v", o)
	}
	if got := k.String(); got != "configmaps/a/cm1" {
		t.Fatalf("String() = %q", got)
	}
	if got := key("nodes", "", "n1").String(); got != "nodes/n1" {
		t.Fatalf("String() = %q", got)
	}
}

func TestEmptyStore(t *testing.T) {
	snap := state.NewStore().Snapshot()
	if snap.Index() != 0 {
		t.Fatalf("Index() = %d, want 0", snap.Index())
	}
	if snap.Get(key("configmaps", "a", "x")) != nil || snap.GetByUID("u") != nil {
		t.Fatalf("empty store returned an object")
	}
	if n := snap.Count("configmaps", ""); n != 0 {
		t.Fatalf("Count = %d", n)
	}
	snap.All(func(o *state.Object) bool { t.Fatalf("All returned %v", o); return false })
}

func TestListNamespaces(t *testing.T) {
	snap := fixture(t).Snapshot()
	cases := []struct {
		resource, ns string
		want         []string
	}{
		{"configmaps", "", []string{"configmaps/a/cm1", "configmaps/a/cm2", "configmaps/a/cm3", "configmaps/ab/cm1", "configmaps/b/cm1", "configmaps/b/cm2"}},
		{"configmaps", "a", []string{"configmaps/a/cm1", "configmaps/a/cm2", "configmaps/a/cm3"}},
		{"configmaps", "ab", []string{"configmaps/ab/cm1"}},
		{"configmaps", "b", []string{"configmaps/b/cm1", "configmaps/b/cm2"}},
		{"configmaps", "c", nil},
		{"configmapsx", "", []string{"configmapsx/a/x1"}},
		{"apps/deployments", "a", []string{"apps/deployments/a/d1"}},
		{"apps/deployments", "", []string{"apps/deployments/a/d1"}},
		{"nodes", "", []string{"nodes/n1", "nodes/n2"}},
		{"pods", "", []string{"pods/a/p1"}},
		{"config", "", nil},
		{"secrets", "", nil},
	}
	for _, tc := range cases {
		sameStrings(t, fmt.Sprintf("List(%q, %q)", tc.resource, tc.ns), list(snap, tc.resource, tc.ns, "", 0), tc.want)
		if n := snap.Count(tc.resource, tc.ns); n != len(tc.want) {
			t.Errorf("Count(%q, %q) = %d, want %d", tc.resource, tc.ns, n, len(tc.want))
		}
	}
}

// TestListPagination pages through every listing with every page size,
// continuing after the last ID of each page, as the API server does.
func TestListPagination(t *testing.T) {
	snap := fixture(t).Snapshot()
	for _, q := range []struct{ resource, ns string }{
		{"configmaps", ""}, {"configmaps", "a"}, {"configmaps", "b"}, {"configmaps", "ab"}, {"nodes", ""}, {"pods", "a"}, {"secrets", ""},
	} {
		full := list(snap, q.resource, q.ns, "", 0)
		for size := 1; size <= len(full)+1; size++ {
			var got []string
			after := ""
			for pages := 0; ; pages++ {
				if pages > len(full)+1 {
					t.Fatalf("List(%q, %q) pages of %d do not end", q.resource, q.ns, size)
				}
				var page []*state.Object
				snap.List(q.resource, q.ns, after, func(o *state.Object) bool {
					page = append(page, o)
					return len(page) < size
				})
				for _, o := range page {
					got = append(got, o.Key.String())
				}
				if len(page) < size {
					break
				}
				after = page[len(page)-1].ID
			}
			sameStrings(t, fmt.Sprintf("List(%q, %q) in pages of %d", q.resource, q.ns, size), got, full)
		}
	}
}

func TestListAfter(t *testing.T) {
	snap := fixture(t).Snapshot()
	cases := []struct {
		name, resource, ns, after string
		want                      []string
	}{
		{"after an object", "configmaps", "", key("configmaps", "a", "cm2").ID(),
			[]string{"configmaps/a/cm3", "configmaps/ab/cm1", "configmaps/b/cm1", "configmaps/b/cm2"}},
		{"after a deleted (absent) key", "configmaps", "", key("configmaps", "a", "cm15").ID(),
			[]string{"configmaps/a/cm2", "configmaps/a/cm3", "configmaps/ab/cm1", "configmaps/b/cm1", "configmaps/b/cm2"}},
		{"after the last", "configmaps", "", key("configmaps", "b", "cm2").ID(), nil},
		{"in a namespace", "configmaps", "a", key("configmaps", "a", "cm1").ID(), []string{"configmaps/a/cm2", "configmaps/a/cm3"}},
		{"namespace, after its last", "configmaps", "a", key("configmaps", "a", "cm3").ID(), nil},
		{"namespace, after an earlier namespace", "configmaps", "b", key("configmaps", "a", "cm2").ID(), []string{"configmaps/b/cm1", "configmaps/b/cm2"}},
		{"namespace, after a later namespace", "configmaps", "a", key("configmaps", "b", "cm1").ID(), nil},
		{"after an earlier resource", "configmaps", "", key("apps/deployments", "a", "d1").ID(),
			[]string{"configmaps/a/cm1", "configmaps/a/cm2", "configmaps/a/cm3", "configmaps/ab/cm1", "configmaps/b/cm1", "configmaps/b/cm2"}},
		{"after a later resource", "configmaps", "", key("nodes", "", "n1").ID(), nil},
		{"cluster-scoped", "nodes", "", key("nodes", "", "n1").ID(), []string{"nodes/n2"}},
	}
	for _, tc := range cases {
		sameStrings(t, tc.name, list(snap, tc.resource, tc.ns, tc.after, 0), tc.want)
	}
}

func TestListStops(t *testing.T) {
	snap := fixture(t).Snapshot()
	sameStrings(t, "List limit 2", list(snap, "configmaps", "", "", 2), []string{"configmaps/a/cm1", "configmaps/a/cm2"})
	sameStrings(t, "List after, limit 1", list(snap, "configmaps", "", key("configmaps", "a", "cm3").ID(), 1), []string{"configmaps/ab/cm1"})
	n := 0
	snap.All(func(*state.Object) bool { n++; return n < 3 })
	if n != 3 {
		t.Fatalf("All called fn %d times after it returned false at 3", n)
	}
}

func TestInNamespace(t *testing.T) {
	snap := fixture(t).Snapshot()
	in := func(ns string, limit int) []string {
		var out []string
		snap.InNamespace(ns, func(o *state.Object) bool {
			out = append(out, o.Key.String())
			return limit <= 0 || len(out) < limit
		})
		return out
	}
	sameStrings(t, "InNamespace(a)", in("a", 0), []string{
		"apps/deployments/a/d1", "configmaps/a/cm1", "configmaps/a/cm2", "configmaps/a/cm3", "configmapsx/a/x1", "pods/a/p1",
	})
	sameStrings(t, "InNamespace(ab)", in("ab", 0), []string{"configmaps/ab/cm1"})
	sameStrings(t, "InNamespace(b)", in("b", 0), []string{"configmaps/b/cm1", "configmaps/b/cm2"})
	sameStrings(t, "InNamespace(nope)", in("nope", 0), nil)
	// Cluster-scoped objects are in no namespace.
	sameStrings(t, "InNamespace()", in("", 0), nil)
	sameStrings(t, "InNamespace(a) limit 2", in("a", 2), []string{"apps/deployments/a/d1", "configmaps/a/cm1"})
}

func TestGetAndGetByUID(t *testing.T) {
	s := fixture(t)
	snap := s.Snapshot()
	for i, k := range fixtureKeys {
		o := snap.Get(k)
		if o == nil || o.Key != k || o.UID != uidOf(k) || string(o.Data) != fmt.Sprintf(`{"i":%d}`, i) {
			t.Fatalf("Get(%s) = %+v", k, o)
		}
		if u := snap.GetByUID(uidOf(k)); u != o {
			t.Fatalf("GetByUID(%s) = %+v, want %+v", uidOf(k), u, o)
		}
	}
	for _, k := range []state.Key{key("configmaps", "a", "cm"), key("configmaps", "", "cm1"), key("configmaps", "a", "cm1x"), key("nodes", "a", "n1")} {
		if o := snap.Get(k); o != nil {
			t.Fatalf("Get(%s) = %+v, want nil", k, o)
		}
	}
	for _, uid := range []string{"", "uid", "uid-configmaps", uidOf(key("configmaps", "a", "cm1")) + "x"} {
		if o := snap.GetByUID(uid); o != nil {
			t.Fatalf("GetByUID(%q) = %+v, want nil", uid, o)
		}
	}
	// Replacing an object under a new UID and deleting one keep the UID index
	// in step.
	k := key("configmaps", "a", "cm1")
	w := s.Write()
	w.Put(state.NewObject(k, "uid-new", []byte(`{}`), 4, 20))
	w.Delete(snap.Get(key("pods", "a", "p1")))
	w.Commit()
	now := s.Snapshot()
	if now.GetByUID(uidOf(k)) != nil {
		t.Fatalf("old UID still indexed after replace")
	}
	if o := now.GetByUID("uid-new"); o == nil || o.Key != k {
		t.Fatalf("GetByUID(uid-new) = %+v", o)
	}
	if now.Get(key("pods", "a", "p1")) != nil || now.GetByUID(uidOf(key("pods", "a", "p1"))) != nil {
		t.Fatalf("deleted object still found")
	}
}

func TestSnapshotIsolation(t *testing.T) {
	s := fixture(t)
	before := s.Snapshot()
	k := key("configmaps", "a", "new")
	w := s.Write()
	// A write transaction reads its own writes.
	w.Put(state.NewObject(k, "uid-new", []byte(`{}`), 12, 12))
	w.SetIndex(12)
	if w.Get(k) == nil || w.GetByUID("uid-new") == nil || w.Index() != 12 || w.Count("configmaps", "a") != 4 {
		t.Fatalf("write transaction does not see its own writes")
	}
	if before.Get(k) != nil || s.Snapshot().Get(k) != nil {
		t.Fatalf("uncommitted write visible")
	}
	w.Commit()
	if before.Get(k) != nil || before.Index() != uint64(len(fixtureKeys)) || before.Count("configmaps", "a") != 3 {
		t.Fatalf("earlier snapshot changed after commit")
	}
	after := s.Snapshot()
	if after.Get(k) == nil || after.Index() != 12 {
		t.Fatalf("committed write not visible")
	}

	// Abort drops everything.
	w = s.Write()
	w.Delete(after.Get(k))
	w.SetIndex(13)
	w.Abort()
	if now := s.Snapshot(); now.Get(k) == nil || now.Index() != 12 {
		t.Fatalf("aborted write visible")
	}
}

func TestAllInKeyOrder(t *testing.T) {
	snap := fixture(t).Snapshot()
	var ids []string
	snap.All(func(o *state.Object) bool { ids = append(ids, o.ID); return true })
	if len(ids) != len(fixtureKeys) {
		t.Fatalf("All returned %d objects, want %d", len(ids), len(fixtureKeys))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i-1] >= ids[i] {
			t.Fatalf("All out of order: %q before %q", ids[i-1], ids[i])
		}
	}
}
