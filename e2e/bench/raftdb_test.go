package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// BenchmarkRaftDBSize (issue 18): raft.db's size under sustained updates
// of 1,000 ConfigMaps (SKIFF_BENCH_UPDATES, default 1,000,000, by 64
// clients) on one master: the size every 10% of the way (Raft folds the
// log into snapshots every 16,384 entries and keeps 10,240; bbolt keeps
// its file at the high-water mark), then after a restart (compaction at
// start when mostly free).
func BenchmarkRaftDBSize(b *testing.B) {
	total := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("SKIFF_BENCH_UPDATES")); err == nil && v > 0 {
		total = v
	}
	m := testutil.NewMaster(b, testutil.MasterOptions{Name: "m1"})
	m.Start()
	m.WaitReady(30 * time.Second)
	cs := m.Clientset()
	ctx := context.Background()
	const objects = 1000
	payload := strings.Repeat("x", 200)
	for i := 0; i < objects; i++ {
		if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("u-%d", i)},
			Data: map[string]string{"p": payload, "v": "0"}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	db := filepath.Join(m.DataDir, "raft", "raft.db")
	size := func() int64 {
		st, err := os.Stat(db)
		if err != nil {
			b.Fatal(err)
		}
		return st.Size()
	}
	var done, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	var maxSize int64
	var mu sync.Mutex
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for {
				n := done.Add(1)
				if n > int64(total) {
					return
				}
				name := fmt.Sprintf("u-%d", int(n)%objects)
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"p": payload, "v": strconv.FormatInt(n, 10)}}
				if _, err := cs.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
					errs.Add(1)
				}
				if n%(int64(total)/10) == 0 {
					s := size()
					mu.Lock()
					maxSize = max(maxSize, s)
					mu.Unlock()
					fmt.Printf("raft.db after %d updates: %.1f MiB (%s)\n", n, float64(s)/(1<<20), time.Since(start).Round(time.Second))
				}
			}
		}(w)
	}
	wg.Wait()
	end := size()
	m.Stop()
	m.Start()
	m.WaitReady(60 * time.Second)
	after := size()
	b.ReportMetric(float64(maxSize)/(1<<20), "max-MiB")
	b.ReportMetric(float64(end)/(1<<20), "end-MiB")
	b.ReportMetric(float64(after)/(1<<20), "after-restart-MiB")
	b.ReportMetric(float64(total)/time.Since(start).Seconds(), "updates/s")
	fmt.Printf("raft.db: %d updates of %d objects (%d errors) in %s: max %.1f MiB, end %.1f MiB, after restart %.1f MiB\n",
		total, objects, errs.Load(), time.Since(start).Round(time.Second), float64(maxSize)/(1<<20), float64(end)/(1<<20), float64(after)/(1<<20))
}
