package gossip

import (
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// loopback returns a 127.x.y.z address of its own for one member.
func loopback(t *testing.T) string {
	t.Helper()
	for range 100 {
		ip := fmt.Sprintf("127.%d.%d.%d", 10+rand.IntN(240), rand.IntN(256), 2+rand.IntN(250))
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err == nil {
			l.Close()
			return ip
		}
	}
	t.Fatal("no loopback address")
	return ""
}

func start(t *testing.T, name, dir, ip string, keys []string) *Serf {
	t.Helper()
	s, err := New(Config{NodeName: name, BindAddr: ip, DataDir: dir, Keys: keys,
		Tags: map[string]string{TagRole: RoleAgent, TagNode: name}})
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	return s
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func statusOf(s Membership, name string) Status {
	for _, m := range s.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

func TestKeyFromSecret(t *testing.T) {
	a, err := KeyFromSecret("secret-1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := KeyFromSecret("secret-1")
	c, _ := KeyFromSecret("secret-2")
	if a != b || a == c {
		t.Fatalf("derivation not a function of the secret: %s %s %s", a, b, c)
	}
	if raw, err := DecodeKey(a); err != nil || len(raw) != 32 {
		t.Fatalf("derived key %q: %d bytes, %v", a, len(raw), err)
	}
	if _, err := KeyFromSecret(""); err == nil {
		t.Fatal("empty secret accepted")
	}
}

func TestJoinFailAndRejoin(t *testing.T) {
	key, _ := KeyFromSecret("s3cret")
	keys := []string{key}
	a := start(t, "a", t.TempDir(), loopback(t), keys)
	bDir := t.TempDir()
	b := start(t, "b", bDir, loopback(t), keys)
	c := start(t, "c", t.TempDir(), loopback(t), keys)
	events, cancel := a.Subscribe()
	defer cancel()
	for _, m := range []*Serf{b, c} {
		if n, err := m.Join([]string{a.Addr()}); err != nil || n != 1 {
			t.Fatalf("join: %d %v", n, err)
		}
	}
	waitFor(t, 10*time.Second, "3 alive members", func() error {
		for _, s := range []*Serf{a, b, c} {
			for _, n := range []string{"a", "b", "c"} {
				if st := statusOf(s, n); st != StatusAlive {
					return fmt.Errorf("%s sees %s %q", s.Local().Name, n, st)
				}
			}
		}
		return nil
	})
	if tags := b.Local().Tags; tags[TagRole] != RoleAgent || tags[TagNode] != "b" {
		t.Fatalf("tags: %v", tags)
	}
	// b dies without a word: a declares it failed.
	_ = b.Shutdown()
	waitFor(t, 30*time.Second, "b failed", func() error {
		if st := statusOf(a, "b"); st != StatusFailed {
			return fmt.Errorf("a sees b %q", st)
		}
		return nil
	})
	// The member list changes before the event reaches subscribers (serf
	// delivers events from its own goroutine): wait for it with a deadline.
	deadline := time.After(10 * time.Second)
	for sawFailed := false; !sawFailed; {
		select {
		case ev := <-events:
			sawFailed = ev.Type == EventFailed && len(ev.Members) == 1 && ev.Members[0].Name == "b"
		case <-deadline:
			t.Fatal("no member-failed event for b")
		}
	}
	// b comes back under a new address with its data dir: it rejoins
	// by itself (serf's snapshot) under the same name.
	b2 := start(t, "b", bDir, loopback(t), nil)
	stop := make(chan struct{})
	defer close(stop)
	go KeepJoined(b2, func() []string { return []string{a.Addr()} }, 500*time.Millisecond, time.Minute, stop, b2.log)
	waitFor(t, 30*time.Second, "b alive at its new address", func() error {
		for _, m := range a.Members() {
			if m.Name == "b" {
				if m.Status != StatusAlive || m.Addr != b2.Addr() {
					return fmt.Errorf("a sees b %s at %s, want alive at %s", m.Status, m.Addr, b2.Addr())
				}
				return nil
			}
		}
		return fmt.Errorf("a does not know b")
	})
}

func TestWrongKeyRefused(t *testing.T) {
	k1, _ := KeyFromSecret("one")
	k2, _ := KeyFromSecret("two")
	a := start(t, "a", t.TempDir(), loopback(t), []string{k1})
	x := start(t, "x", t.TempDir(), loopback(t), []string{k2})
	if n, err := x.Join([]string{a.Addr()}); err == nil && n > 0 {
		t.Fatalf("a member with another key joined (%d)", n)
	}
	if st := statusOf(a, "x"); st != "" {
		t.Fatalf("a knows x: %s", st)
	}
}

func TestKeyRotationPersists(t *testing.T) {
	k1, _ := KeyFromSecret("rotate")
	aDir, bDir := t.TempDir(), t.TempDir()
	a := start(t, "a", aDir, loopback(t), []string{k1})
	b := start(t, "b", bDir, loopback(t), []string{k1})
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "joined", func() error {
		if statusOf(a, "b") != StatusAlive {
			return fmt.Errorf("a does not see b")
		}
		return nil
	})
	k2, _ := NewKey()
	for _, op := range []func(string) (KeyStatus, error){a.InstallKey, a.UseKey} {
		if ks, err := op(k2); err != nil {
			t.Fatalf("key op: %v %+v", err, ks)
		}
	}
	if ks, err := a.RemoveKey(k1); err != nil {
		t.Fatalf("remove: %v %+v", err, ks)
	}
	ks, err := a.ListKeys()
	if err != nil || len(ks.Keys) != 1 || ks.Keys[k2] != 2 || ks.Primary[k2] != 2 {
		t.Fatalf("keys after rotation: %+v %v", ks, err)
	}
	for _, dir := range []string{aDir, bDir} {
		got, err := ReadKeyring(filepath.Join(dir, "keyring"))
		if err != nil || len(got) != 1 || got[0] != k2 {
			t.Fatalf("keyring file in %s: %v %v", dir, got, err)
		}
	}
	// A member holding only the old key is refused; once given the
	// current keyring it joins.
	old := start(t, "old", t.TempDir(), loopback(t), []string{k1})
	if n, err := old.Join([]string{a.Addr()}); err == nil && n > 0 {
		t.Fatal("old key accepted after rotation")
	}
	if err := old.SetLocalKeys(a.Keys()); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Join([]string{a.Addr()}); err != nil {
		t.Fatalf("join with the current key: %v", err)
	}
}

func TestFakeMembership(t *testing.T) {
	f := NewFakeMembership("m1", map[string]string{TagRole: RoleServer})
	ch, cancel := f.Subscribe()
	defer cancel()
	f.Set("n1", StatusFailed, map[string]string{TagRole: RoleAgent})
	ev := <-ch
	if ev.Type != EventFailed || ev.Members[0].Name != "n1" || statusOf(f, "n1") != StatusFailed {
		t.Fatalf("event %+v", ev)
	}
}

// TestRefuteHook: memberlist's refutation lines (it has no hook for them)
// call OnRefute; other lines do not.
func TestRefuteHook(t *testing.T) {
	called := make(chan struct{}, 4)
	w := levelWriter{l: slog.New(slog.NewTextHandler(io.Discard, nil)), onRefute: func() { called <- struct{}{} }}
	lg := stdlog.New(w, "", 0)
	lg.Printf("[WARN] memberlist: Refuting a suspect message (from: %s)", "b")
	lg.Printf("[WARN] memberlist: Refuting a dead message (from: %s)", "c")
	lg.Printf("[INFO] serf: EventMemberFailed: %s", "d")
	for i := 0; i < 2; i++ {
		select {
		case <-called:
		case <-time.After(5 * time.Second):
			t.Fatalf("OnRefute called %d times, want 2", i)
		}
	}
	select {
	case <-called:
		t.Fatal("OnRefute called for another line")
	case <-time.After(100 * time.Millisecond):
	}
}
