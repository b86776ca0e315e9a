package apiserver_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/server/apiserver/apiservertest"
)

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkListMediaTypes lists SKIFF_BENCH_OBJECTS (1,000) ConfigMaps of
// 200 bytes in process, as JSON and as protobuf: the server's encoding cost
// without a master's processes (e2e/bench BenchmarkListLarge measures a
// real one).
func BenchmarkListMediaTypes(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("SKIFF_BENCH_OBJECTS")); err == nil && v > 0 {
		n = v
	}
	srv := apiservertest.NewServer(b, apiservertest.Options{})
	cs := srv.Clientset(b)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	payload := strings.Repeat("x", 200)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := cs.CoreV1().ConfigMaps("bench").Create(ctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%05d", i), Labels: map[string]string{"app": "bench"}},
					Data:       map[string]string{"payload": payload},
				}, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	hc := srv.HTTP.Client()
	for _, form := range []struct{ name, accept string }{
		{"json", "application/json"},
		{"protobuf", "application/vnd.kubernetes.protobuf, application/json"},
	} {
		b.Run(form.name, func(b *testing.B) {
			var size int64
			cpu0 := cpuTime()
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, srv.HTTP.URL+"/api/v1/namespaces/bench/configmaps", nil)
				req.Header.Set("Accept", form.accept)
				req.Header.Set("Authorization", "Bearer "+apiservertest.Token)
				resp, err := hc.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				size, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("list: %d %v", resp.StatusCode, err)
				}
			}
			b.ReportMetric(float64(size), "bytes/list")
			// CPU time (server and client, which only reads) is steadier
			// than wall time on a shared machine.
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}
