package e2e

import (
	"context"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ackedWriter creates ConfigMaps <prefix>-NNNNN in namespace default, one
// after another, through client(i) for the i-th, until stopped, and
// records those acknowledged: the writes a fault must not lose.
type ackedWriter struct {
	mu    sync.Mutex
	acked []string
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startAckedWriter starts the writes; each waits at most timeout, and a
// failed one is followed by a short pause (its master may be restarting).
func startAckedWriter(ctx context.Context, prefix string, timeout time.Duration, client func(i int) kubernetes.Interface) *ackedWriter {
	w := &ackedWriter{stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			name := fmt.Sprintf("%s-%05d", prefix, i)
			wctx, cancel := context.WithTimeout(ctx, timeout)
			_, err := client(i).CoreV1().ConfigMaps("default").Create(wctx, configMap(name, map[string]string{"i": name}), metav1.CreateOptions{})
			cancel()
			if err == nil {
				w.mu.Lock()
				w.acked = append(w.acked, name)
				w.mu.Unlock()
				continue
			}
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

// Count is the number of writes acknowledged so far.
func (w *ackedWriter) Count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// Stop ends the writes and returns the names acknowledged.
func (w *ackedWriter) Stop() []string {
	close(w.stop)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.acked...)
}
