package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
)

// BenchmarkSlowDiskElection (issue 18): three masters whose data dirs are
// on a slow disk (testutil.SlowDisk: a FUSE pass-through that adds
// SKIFF_BENCH_FSYNC_DELAY, default 100ms, to every fsync), once with the
// Raft timeouts each master derives from the fsync latency it measures at
// start, once with them fixed at the default 600ms
// (--raft-heartbeat-timeout 600ms). For each: elections started during
// SKIFF_BENCH_LOAD (default 20s) of writes by 8 clients (a healthy
// cluster needs none), the writes acknowledged, and the time from a
// kill -9 of the leader to the first acknowledged write (3 kills).
func BenchmarkSlowDiskElection(b *testing.B) {
	delay := envDuration("SKIFF_BENCH_FSYNC_DELAY", 100*time.Millisecond)
	load := envDuration("SKIFF_BENCH_LOAD", 20*time.Second)
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"derived", nil},
		{"fixed-600ms", []string{"--raft-heartbeat-timeout", "600ms"}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			c := slowDiskCluster(b, delay, mode.args)
			elections, acked, errs := slowDiskLoad(b, c, load)
			var fo []time.Duration
			stuck := 0
			for k := 0; k < 3; k++ {
				if d, ok := slowDiskFailover(b, c, k); ok {
					fo = append(fo, d)
				} else {
					stuck++
				}
			}
			failover := "none within 60s"
			if len(fo) > 0 {
				p50 := percentile(fo, 0.5)
				b.ReportMetric(ms(p50), "failover-p50-ms")
				failover = fmt.Sprintf("p50=%.0fms max=%.0fms", ms(p50), ms(fo[len(fo)-1]))
			}
			b.ReportMetric(float64(elections), "elections-under-load")
			b.ReportMetric(float64(acked)/load.Seconds(), "writes/s")
			b.ReportMetric(float64(stuck), "kills-without-leader-in-60s")
			fmt.Printf("slow disk (+%s per fsync), %s timeouts (%s): %d elections in %s of load, %.0f writes/s acknowledged (%d failed); kill -9 of the leader, 3 times: first write after %s, no leader within 60s %d times\n",
				delay, mode.name, heartbeatTimeouts(c), elections, load, float64(acked)/load.Seconds(), errs, failover, stuck)
		})
	}
}

// slowDiskCluster starts three masters with their data dirs on slow disks.
func slowDiskCluster(b *testing.B, delay time.Duration, args []string) *testutil.Cluster {
	first := testutil.NewMaster(b, testutil.MasterOptions{Name: "m1", Args: args})
	first.DataDir = filepath.Join(testutil.SlowDisk(b, delay), "m1")
	first.Start()
	first.WaitReady(120 * time.Second)
	c := testutil.ClusterOf(b, first)
	for i := 2; i <= 3; i++ {
		m := testutil.NewMaster(b, testutil.MasterOptions{Name: fmt.Sprintf("m%d", i), Join: first.URL(), Token: first.Token(), Args: args})
		m.DataDir = filepath.Join(testutil.SlowDisk(b, delay), m.Name)
		m.Start()
		c.Masters = append(c.Masters, m)
	}
	c.WaitReadyVoters(first, 3, 180*time.Second, "three ready voters on slow disks")
	return c
}

// elections counts the elections the masters' logs say they started.
func elections(c *testutil.Cluster) int {
	n := 0
	for _, m := range c.Masters {
		b, err := os.ReadFile(m.LogPath())
		if err == nil {
			n += strings.Count(string(b), "entering candidate state")
		}
	}
	return n
}

// heartbeatTimeouts names the timeouts the masters chose (from their logs).
func heartbeatTimeouts(c *testutil.Cluster) string {
	var out []string
	for _, m := range c.Masters {
		b, _ := os.ReadFile(m.LogPath())
		t := "600ms"
		for _, line := range strings.Split(string(b), "\n") {
			if i := strings.Index(line, " timeout="); i >= 0 && strings.Contains(line, "slow disk") {
				t = strings.Fields(line[i+len(" timeout="):])[0]
			}
		}
		out = append(out, m.Name+"="+t)
	}
	return strings.Join(out, " ")
}

// slowDiskLoad writes for d with 8 clients spread over the masters and
// returns the elections started meanwhile and the writes acknowledged
// and failed.
func slowDiskLoad(b *testing.B, c *testutil.Cluster, d time.Duration) (int, int64, int64) {
	before := elections(c)
	var acked, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		cs := clientFor(b, c, c.Masters[w%3])
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := cs.CoreV1().ConfigMaps("default").Create(wctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("load-%d-%d-%d", time.Now().UnixNano(), w, i)},
					Data: map[string]string{"v": strings.Repeat("x", 200)}}, metav1.CreateOptions{})
				wcancel()
				switch {
				case err == nil:
					acked.Add(1)
				case ctx.Err() == nil:
					failed.Add(1)
				}
			}
		}(w)
	}
	wg.Wait()
	return elections(c) - before, acked.Load(), failed.Load()
}

// slowDiskFailover kills the leader and times the first acknowledged
// write through a survivor (false: none within 60s, the two left could
// not elect a leader); the killed master is started again.
func slowDiskFailover(b *testing.B, c *testutil.Cluster, k int) (time.Duration, bool) {
	leader := c.Leader(60 * time.Second)
	var survivor *testutil.Master
	for _, m := range c.Running() {
		if m != leader {
			survivor = m
			break
		}
	}
	cs := clientFor(b, c, survivor)
	t0 := time.Now()
	leader.Kill()
	for j := 0; ; j++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sd-fo-%d-%d", k, j)}}, metav1.CreateOptions{})
		cancel()
		if err == nil {
			break
		}
		if time.Since(t0) > 60*time.Second {
			b.Logf("no write acknowledged 60s after killing the leader: %v", err)
			leader.Start()
			leader.WaitReady(180 * time.Second)
			return 0, false
		}
	}
	took := time.Since(t0)
	leader.Start()
	leader.WaitReady(120 * time.Second)
	return took, true
}
