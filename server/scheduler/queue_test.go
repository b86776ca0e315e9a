package scheduler

import (
	"context"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time       { return c.t }
func (c *fakeClock) step(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock                { return &fakeClock{t: time.Unix(1000, 0)} }
func popName(t *testing.T, q *Queue) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	qp, _, ok := q.Pop(ctx)
	if !ok {
		t.Fatal("queue empty")
	}
	return qp.pod.Name
}

func TestQueueOrder(t *testing.T) {
	c := newClock()
	q := NewQueue(time.Second, 10*time.Second, 5*time.Minute, c.now)
	for _, p := range []struct {
		name string
		prio int32
	}{{"a", 0}, {"b", 10}, {"c", 0}, {"d", 10}} {
		pp := pod(p.name, priority(p.prio))
		c.step(time.Millisecond)
		q.Add(pp, info(pp))
	}
	var got []string
	for i := 0; i < 4; i++ {
		got = append(got, popName(t, q))
	}
	expectEqual(t, "order (priority, then age)", got, []string{"b", "d", "a", "c"})
}

func TestQueueUnschedulableAndMoves(t *testing.T) {
	c := newClock()
	q := NewQueue(time.Second, 10*time.Second, 5*time.Minute, c.now)
	p := pod("p")
	q.Add(p, info(p))
	qp, cycle, _ := q.Pop(context.Background())
	q.AddUnschedulable(qp, cycle, map[string]bool{"NodeResourcesFit": true})
	if a, b, u := q.Len(); a != 0 || b != 0 || u != 1 {
		t.Fatalf("lens %d %d %d", a, b, u)
	}
	// A pod's labels changing elsewhere does not help a resource failure.
	q.MoveAll(eventAssignedPodChange)
	if _, _, u := q.Len(); u != 1 {
		t.Fatal("moved by an irrelevant event")
	}
	// A node added helps; the pod's back-off (1s) is still running.
	q.MoveAll(eventNodeAdd)
	if a, b, u := q.Len(); a != 0 || b != 1 || u != 0 {
		t.Fatalf("after node add: %d %d %d", a, b, u)
	}
	c.step(1100 * time.Millisecond)
	q.flush()
	if a, _, _ := q.Len(); a != 1 {
		t.Fatal("back-off ended: the pod should be active")
	}
	if popName(t, q) != "p" {
		t.Fatal("wrong pod")
	}
}

func TestQueueMoveDuringAttempt(t *testing.T) {
	c := newClock()
	q := NewQueue(time.Second, 10*time.Second, 5*time.Minute, c.now)
	p := pod("p")
	q.Add(p, info(p))
	qp, cycle, _ := q.Pop(context.Background())
	// A node appears while the attempt runs: the failure must not park the
	// pod waiting for a change that already happened.
	q.MoveAll(eventNodeAdd)
	q.AddUnschedulable(qp, cycle, map[string]bool{"NodeResourcesFit": true})
	if _, b, u := q.Len(); b != 1 || u != 0 {
		t.Fatalf("want back-off, got backoff=%d unschedulable=%d", b, u)
	}
}

func TestQueueBackoffGrowsAndCaps(t *testing.T) {
	q := NewQueue(time.Second, 10*time.Second, 5*time.Minute, nil)
	qp := &queuedPod{}
	for attempts, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 9: 10 * time.Second} {
		qp.attempts = attempts
		expectEqual(t, "backoff", q.backoffDuration(qp), want)
	}
}

func TestQueueLongUnschedulableRetried(t *testing.T) {
	c := newClock()
	q := NewQueue(time.Second, 10*time.Second, 5*time.Minute, c.now)
	p := pod("p")
	q.Add(p, info(p))
	qp, cycle, _ := q.Pop(context.Background())
	q.AddUnschedulable(qp, cycle, map[string]bool{"NodeAffinity": true})
	c.step(4 * time.Minute)
	q.flush()
	if _, _, u := q.Len(); u != 1 {
		t.Fatal("retried too early")
	}
	c.step(2 * time.Minute)
	q.flush()
	if a, _, _ := q.Len(); a != 1 {
		t.Fatal("an unschedulable pod is retried after 5 minutes")
	}
}

func TestQueueDeleteAndUpdate(t *testing.T) {
	q := NewQueue(time.Second, 10*time.Second, 5*time.Minute, nil)
	a, b := pod("a"), pod("b", priority(1))
	q.Add(a, info(a))
	q.Add(b, info(b))
	q.Delete(b.UID)
	if popName(t, q) != "a" {
		t.Fatal("deleted pod popped")
	}
	qp, cycle, _ := func() (*queuedPod, int64, bool) { q.Add(b, info(b)); return q.Pop(context.Background()) }()
	q.AddUnschedulable(qp, cycle, map[string]bool{"NodeAffinity": true})
	b2 := b.DeepCopy()
	b2.Labels["new"] = "label"
	q.Add(b2, info(b2))
	if act, bo, _ := q.Len(); act+bo != 1 {
		t.Fatal("an updated unschedulable pod is tried again")
	}
}
