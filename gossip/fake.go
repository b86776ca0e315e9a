package gossip

import (
	"errors"
	"sync"
	"time"
)

// FakeMembership is an in-memory Membership for unit tests: members and
// their statuses are set by the test, which also sees key operations.
type FakeMembership struct {
	mu      sync.Mutex
	local   string
	members map[string]Member
	keys    []string
	joined  [][]string
	subs    map[int]chan Event
	next    int
	left    bool
}

// NewFakeMembership returns a fake whose local member is name.
func NewFakeMembership(name string, tags map[string]string) *FakeMembership {
	f := &FakeMembership{local: name, members: map[string]Member{}, subs: map[int]chan Event{}}
	f.members[name] = Member{Name: name, Addr: "127.0.0.1:7946", Tags: tags, Status: StatusAlive, Since: time.Now()}
	return f
}

// Set puts a member in a status (now) and sends the matching event.
func (f *FakeMembership) Set(name string, st Status, tags map[string]string) {
	f.SetAt(name, st, tags, time.Now())
}

// SetAt is Set with the time the status changed.
func (f *FakeMembership) SetAt(name string, st Status, tags map[string]string, at time.Time) {
	f.mu.Lock()
	m, ok := f.members[name]
	if !ok {
		m = Member{Name: name, Addr: name + ":7946"}
	}
	if tags != nil {
		m.Tags = tags
	}
	m.Status, m.Since = st, at
	f.members[name] = m
	typ := EventJoin
	switch st {
	case StatusFailed:
		typ = EventFailed
	case StatusLeft, StatusLeaving:
		typ = EventLeave
	}
	for _, ch := range f.subs {
		select {
		case ch <- Event{Type: typ, Members: []Member{m}}:
		default:
		}
	}
	f.mu.Unlock()
}

// Joined returns the address lists Join was called with.
func (f *FakeMembership) Joined() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.joined...)
}

// Join implements Membership.
func (f *FakeMembership) Join(addrs []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(addrs) == 0 {
		return 0, errors.New("gossip: no address to join")
	}
	f.joined = append(f.joined, append([]string(nil), addrs...))
	return len(addrs), nil
}

// Leave implements Membership.
func (f *FakeMembership) Leave() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.left = true
	return nil
}

// Shutdown implements Membership.
func (f *FakeMembership) Shutdown() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, ch := range f.subs {
		close(ch)
		delete(f.subs, id)
	}
	return nil
}

// Members implements Membership.
func (f *FakeMembership) Members() []Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Member, 0, len(f.members))
	for _, m := range f.members {
		out = append(out, m)
	}
	return out
}

// Local implements Membership.
func (f *FakeMembership) Local() Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.members[f.local]
}

// Subscribe implements Membership.
func (f *FakeMembership) Subscribe() (<-chan Event, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan Event, 256)
	id := f.next
	f.next++
	f.subs[id] = ch
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c, ok := f.subs[id]; ok {
			close(c)
			delete(f.subs, id)
		}
	}
}

// SetTags implements Membership.
func (f *FakeMembership) SetTags(tags map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.members[f.local]
	m.Tags = tags
	f.members[f.local] = m
	return nil
}

// Keys implements Membership.
func (f *FakeMembership) Keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.keys...)
}

// SetLocalKeys implements Membership.
func (f *FakeMembership) SetLocalKeys(keys []string) error {
	for _, k := range keys {
		if _, err := DecodeKey(k); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys = append([]string(nil), keys...)
	return nil
}

func (f *FakeMembership) status() KeyStatus {
	ks := KeyStatus{Members: 1, Responses: 1, Keys: map[string]int{}, Primary: map[string]int{}}
	for _, k := range f.keys {
		ks.Keys[k] = 1
	}
	if len(f.keys) > 0 {
		ks.Primary[f.keys[0]] = 1
	}
	return ks
}

// InstallKey implements Membership.
func (f *FakeMembership) InstallKey(key string) (KeyStatus, error) {
	if _, err := DecodeKey(key); err != nil {
		return KeyStatus{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.keys {
		if k == key {
			return f.status(), nil
		}
	}
	f.keys = append(f.keys, key)
	return f.status(), nil
}

// UseKey implements Membership.
func (f *FakeMembership) UseKey(key string) (KeyStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, k := range f.keys {
		if k == key {
			f.keys[0], f.keys[i] = f.keys[i], f.keys[0]
			return f.status(), nil
		}
	}
	return f.status(), errors.New("gossip: key not installed")
}

// RemoveKey implements Membership.
func (f *FakeMembership) RemoveKey(key string) (KeyStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, k := range f.keys {
		if k == key {
			if i == 0 {
				return f.status(), errors.New("gossip: removing the primary key is not allowed")
			}
			f.keys = append(f.keys[:i], f.keys[i+1:]...)
		}
	}
	return f.status(), nil
}

// ListKeys implements Membership.
func (f *FakeMembership) ListKeys() (KeyStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status(), nil
}

var (
	_ Membership = (*FakeMembership)(nil)
	_ Membership = (*Serf)(nil)
)
