package auditlog

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
)

// stuckWriter is a disk that never finishes a write until released.
type stuckWriter struct{ release chan struct{} }

func (w stuckWriter) Write(b []byte) (int, error) {
	<-w.release
	return len(b), nil
}

// TestBatchModeNeverWaitsForTheDisk: with the file's writes stuck, batch
// mode takes events without waiting (the queue full, the rest dropped);
// blocking mode waits.
func TestBatchModeNeverWaitsForTheDisk(t *testing.T) {
	p, err := LoadPolicy("")
	if err != nil {
		t.Fatal(err)
	}
	ev := &auditinternal.Event{AuditID: "x", Stage: auditinternal.StageResponseComplete, Level: auditinternal.LevelMetadata,
		Verb: "create", RequestReceivedTimestamp: metav1.NowMicro()}

	w := stuckWriter{release: make(chan struct{})}
	l, err := newLog(p, Options{Mode: ModeBatch, BufferSize: 10}, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range 1000 {
		if !l.Sink().ProcessEvents(ev) {
			t.Fatal("batch mode refused an event")
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("1000 events with the disk stuck took %v", d)
	}
	close(w.release)
	if err := l.Shutdown(); err != nil {
		t.Fatal(err)
	}

	w = stuckWriter{release: make(chan struct{})}
	l, err = newLog(p, Options{Mode: ModeBlocking}, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		l.Sink().ProcessEvents(ev)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("blocking mode did not wait for the write")
	case <-time.After(200 * time.Millisecond):
	}
	close(w.release)
	<-done
	if err := l.Shutdown(); err != nil {
		t.Fatal(err)
	}
}
