package controller

import (
	"sync"
	"time"
)

// ExpectationsTimeout is how long an unfulfilled expectation holds back a
// controller before it trusts its cache again (as Kubernetes: 5 minutes).
const ExpectationsTimeout = 5 * time.Minute

// Expectations remember, per controller key, how many creations and
// deletions of pods a controller has asked for and not yet seen in its
// informer, so that it does not act twice on a cache that lags behind its
// own writes (Kubernetes' ControllerExpectations).
type Expectations struct {
	mu  sync.Mutex
	m   map[string]*expectation
	now func() time.Time
}

type expectation struct {
	add, del int64
	// dels holds the keys of the pods whose deletion is expected, when
	// deletions are tracked by key (a pod's graceful deletion is seen
	// twice: once marked, once gone).
	dels map[string]bool
	at   time.Time
}

// NewExpectations returns empty expectations.
func NewExpectations() *Expectations {
	return &Expectations{m: map[string]*expectation{}, now: time.Now}
}

// Satisfied reports whether the controller of key may trust its cache:
// nothing is expected, everything expected was seen, or the expectation
// expired.
func (e *Expectations) Satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return true
	}
	if x.add <= 0 && x.del <= 0 && len(x.dels) == 0 {
		return true
	}
	return e.now().Sub(x.at) > ExpectationsTimeout
}

// Expect sets the creations and deletions key now waits for.
func (e *Expectations) Expect(key string, add, del int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{add: int64(add), del: int64(del), at: e.now()}
}

// Lower records that add creations and del deletions will not be seen
// (they failed) or were seen.
func (e *Expectations) Lower(key string, add, del int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		x.add -= int64(add)
		x.del -= int64(del)
	}
}

// CreationObserved records one creation seen by the informer.
func (e *Expectations) CreationObserved(key string) { e.Lower(key, 1, 0) }

// DeletionObserved records one deletion seen by the informer.
func (e *Expectations) DeletionObserved(key string) { e.Lower(key, 0, 1) }

// ExpectCreationsAndDeletions sets the creations key waits for, and the
// pods (by key) whose deletion it waits for.
func (e *Expectations) ExpectCreationsAndDeletions(key string, add int, podKeys []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &expectation{add: int64(add), at: e.now()}
	if len(podKeys) > 0 {
		x.dels = make(map[string]bool, len(podKeys))
		for _, k := range podKeys {
			x.dels[k] = true
		}
	}
	e.m[key] = x
}

// PodDeletionObserved records that the pod podKey was seen deleted (or
// being deleted), or that its deletion failed.
func (e *Expectations) PodDeletionObserved(key, podKey string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		delete(x.dels, podKey)
	}
}

// Delete forgets key (its object is gone).
func (e *Expectations) Delete(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
