package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-io/skiff/e2e/testutil"
	rtestutil "github.com/skiff-io/skiff/runtime/testutil"
)

// ddScript writes mib MiB to $F with dd (fsync at the end) and prints
// the elapsed seconds from /proc/uptime (10 ms resolution; the same clock
// in the pod and on the host). $BB is the busybox binary on the host,
// empty in the pod, whose image has busybox's applets.
func ddScript(mib int) string {
	return `read a _ < /proc/uptime; $BB dd if=/dev/zero of="$F" bs=1M count=` + strconv.Itoa(mib) +
		` conv=fsync 2>/dev/null || exit 1; read b _ < /proc/uptime; echo "elapsed $a $b"`
}

var elapsedLine = regexp.MustCompile(`elapsed ([0-9.]+) ([0-9.]+)`)

// mibPerSecond reads ddScript's output.
func mibPerSecond(out string, mib int) (float64, error) {
	m := elapsedLine.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no timing in %q", out)
	}
	a, _ := strconv.ParseFloat(m[1], 64)
	b, _ := strconv.ParseFloat(m[2], 64)
	if b <= a {
		return 0, fmt.Errorf("elapsed %v s: use a larger SKIFF_BENCH_MIB", b-a)
	}
	return float64(mib) / (b - a), nil
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkLocalPathWrite (issue 17): sequential write throughput (dd of
// SKIFF_BENCH_MIB MiB, 1024 by default, with fsync) in a pod to a volume
// of the built-in local-path class, against the same busybox dd on the
// host into a directory beside the volume's, SKIFF_BENCH_RUNS (7) runs of
// each interleaved; the medians and their ratio (goal ≥ 0.95). The pod
// requests one CPU (Burstable).
func BenchmarkLocalPathWrite(b *testing.B) {
	kb := startKubeletBench(b, "libcontainer")
	ctx := context.Background()
	mib := 1024
	if v, err := strconv.Atoi(os.Getenv("SKIFF_BENCH_MIB")); err == nil && v > 0 {
		mib = v
	}
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "bench-data"}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}
	if _, err := kb.cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, claim, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	pod := kb.pod("writer")
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	// A CPU request of one core: a BestEffort pod's CPU weight (2 shares)
	// would measure the machine's other load, not the storage path.
	pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "bench-data"}}}}
	if _, err := kb.cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	testutil.WaitFor(b, 120*time.Second, "writer Running", func() error {
		p, err := kb.cs.CoreV1().Pods("default").Get(ctx, "writer", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
	hostDir := filepath.Join(kb.agent.DataDir, "storage", "host-direct")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		b.Fatal(err)
	}
	run := func(name string, args ...string) (float64, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(cctx, name, args...).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("%s: %w: %s", name, err, out)
		}
		return mibPerSecond(string(out), mib)
	}
	script := ddScript(mib)
	var inPod, onHost []float64
	b.ResetTimer()
	runs := 7
	if v, err := strconv.Atoi(os.Getenv("SKIFF_BENCH_RUNS")); err == nil && v > 0 {
		runs = v
	}
	for i := 0; i < runs; i++ {
		v, err := run("kubectl", "--kubeconfig", kb.master.Kubeconfig(), "exec", "writer", "--",
			"sh", "-c", "rm -f /data/f; sync; F=/data/f BB= ; "+script)
		if err != nil {
			b.Fatal(err)
		}
		inPod = append(inPod, v)
		f := filepath.Join(hostDir, "f")
		_ = os.Remove(f)
		v, err = run(rtestutil.BusyboxPath, "sh", "-c", "sync; F="+f+" BB="+rtestutil.BusyboxPath+" ; "+script)
		if err != nil {
			b.Fatal(err)
		}
		onHost = append(onHost, v)
	}
	b.StopTimer()
	_ = os.RemoveAll(hostDir)
	p, h := median(inPod), median(onHost)
	b.ReportMetric(p, "pod-MiB/s")
	b.ReportMetric(h, "host-MiB/s")
	b.ReportMetric(p/h, "ratio")
	b.Logf("%d MiB dd with fsync, %d runs each interleaved: pod %.0f MiB/s, host %.0f MiB/s", mib, runs, inPod, onHost)
}
