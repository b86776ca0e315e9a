package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"

	"github.com/skiff-io/skiff/runtime"
)

// runtimeOps counts and times the kubelet's calls into its runtime and
// image service, with the kubelet's metric names, label and operation
// names (its instrumented CRI services): kubelet_runtime_operations_total,
// kubelet_runtime_operations_duration_seconds and
// kubelet_runtime_operations_errors_total by operation_type.
type runtimeOps struct {
	total    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newRuntimeOps() *runtimeOps {
	return &runtimeOps{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_runtime_operations_total",
			Help: "Cumulative number of runtime operations by operation type."}, []string{"operation_type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubelet_runtime_operations_errors_total",
			Help: "Cumulative number of runtime operation errors by operation type."}, []string{"operation_type"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kubelet_runtime_operations_duration_seconds",
			Help:    "Duration in seconds of runtime operations. Broken down by operation type.",
			Buckets: prometheus.ExponentialBuckets(.005, 2.5, 14)}, []string{"operation_type"}),
	}
}

func (o *runtimeOps) collectors() []prometheus.Collector {
	return []prometheus.Collector{o.total, o.errors, o.duration}
}

// record counts one finished operation begun at start.
func (o *runtimeOps) record(op string, start time.Time, err error) {
	o.total.WithLabelValues(op).Inc()
	o.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		o.errors.WithLabelValues(op).Inc()
	}
}

// instrumentedRuntime is a runtime.Runtime whose calls runtimeOps records.
type instrumentedRuntime struct {
	rt  runtime.Runtime
	ops *runtimeOps
}

func (r instrumentedRuntime) RunPodSandbox(ctx context.Context, c *runtimeapi.PodSandboxConfig, h string) (string, error) {
	start := time.Now()
	id, err := r.rt.RunPodSandbox(ctx, c, h)
	r.ops.record("run_podsandbox", start, err)
	return id, err
}

func (r instrumentedRuntime) StopPodSandbox(ctx context.Context, id string) error {
	start := time.Now()
	err := r.rt.StopPodSandbox(ctx, id)
	r.ops.record("stop_podsandbox", start, err)
	return err
}

func (r instrumentedRuntime) RemovePodSandbox(ctx context.Context, id string) error {
	start := time.Now()
	err := r.rt.RemovePodSandbox(ctx, id)
	r.ops.record("remove_podsandbox", start, err)
	return err
}

func (r instrumentedRuntime) PodSandboxStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.PodSandboxStatusResponse, error) {
	start := time.Now()
	out, err := r.rt.PodSandboxStatus(ctx, id, verbose)
	r.ops.record("podsandbox_status", start, err)
	return out, err
}

func (r instrumentedRuntime) ListPodSandbox(ctx context.Context, f *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	start := time.Now()
	out, err := r.rt.ListPodSandbox(ctx, f)
	r.ops.record("list_podsandbox", start, err)
	return out, err
}

func (r instrumentedRuntime) CreateContainer(ctx context.Context, sandbox string, c *runtimeapi.ContainerConfig, sc *runtimeapi.PodSandboxConfig) (string, error) {
	start := time.Now()
	id, err := r.rt.CreateContainer(ctx, sandbox, c, sc)
	r.ops.record("create_container", start, err)
	return id, err
}

func (r instrumentedRuntime) StartContainer(ctx context.Context, id string) error {
	start := time.Now()
	err := r.rt.StartContainer(ctx, id)
	r.ops.record("start_container", start, err)
	return err
}

func (r instrumentedRuntime) StopContainer(ctx context.Context, id string, timeout int64) error {
	start := time.Now()
	err := r.rt.StopContainer(ctx, id, timeout)
	r.ops.record("stop_container", start, err)
	return err
}

func (r instrumentedRuntime) RemoveContainer(ctx context.Context, id string) error {
	start := time.Now()
	err := r.rt.RemoveContainer(ctx, id)
	r.ops.record("remove_container", start, err)
	return err
}

func (r instrumentedRuntime) ListContainers(ctx context.Context, f *runtimeapi.ContainerFilter) ([]*runtimeapi.Container, error) {
	start := time.Now()
	out, err := r.rt.ListContainers(ctx, f)
	r.ops.record("list_containers", start, err)
	return out, err
}

func (r instrumentedRuntime) ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	start := time.Now()
	out, err := r.rt.ContainerStatus(ctx, id, verbose)
	r.ops.record("container_status", start, err)
	return out, err
}

func (r instrumentedRuntime) ExecSync(ctx context.Context, id string, cmd []string, timeout int64) ([]byte, []byte, error) {
	start := time.Now()
	stdout, stderr, err := r.rt.ExecSync(ctx, id, cmd, timeout)
	r.ops.record("exec_sync", start, err)
	return stdout, stderr, err
}

func (r instrumentedRuntime) ContainerStats(ctx context.Context, id string) (*runtimeapi.ContainerStats, error) {
	start := time.Now()
	out, err := r.rt.ContainerStats(ctx, id)
	r.ops.record("container_stats", start, err)
	return out, err
}

func (r instrumentedRuntime) ListContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	start := time.Now()
	out, err := r.rt.ListContainerStats(ctx, f)
	r.ops.record("list_container_stats", start, err)
	return out, err
}

// Streaming is not counted: exec, attach and port-forward are streams the
// API server's proxy drives, not calls of the kubelet.
func (r instrumentedRuntime) Streaming() streaming.Runtime { return r.rt.Streaming() }

// instrumentedImages is a runtime.ImageService whose calls runtimeOps
// records.
type instrumentedImages struct {
	is  runtime.ImageService
	ops *runtimeOps
}

func (s instrumentedImages) ListImages(ctx context.Context, f *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	start := time.Now()
	out, err := s.is.ListImages(ctx, f)
	s.ops.record("list_images", start, err)
	return out, err
}

func (s instrumentedImages) ImageStatus(ctx context.Context, img *runtimeapi.ImageSpec, verbose bool) (*runtimeapi.ImageStatusResponse, error) {
	start := time.Now()
	out, err := s.is.ImageStatus(ctx, img, verbose)
	s.ops.record("image_status", start, err)
	return out, err
}

func (s instrumentedImages) PullImage(ctx context.Context, img *runtimeapi.ImageSpec, auth *runtimeapi.AuthConfig, sc *runtimeapi.PodSandboxConfig) (string, error) {
	start := time.Now()
	out, err := s.is.PullImage(ctx, img, auth, sc)
	s.ops.record("pull_image", start, err)
	return out, err
}

func (s instrumentedImages) RemoveImage(ctx context.Context, img *runtimeapi.ImageSpec) error {
	start := time.Now()
	err := s.is.RemoveImage(ctx, img)
	s.ops.record("remove_image", start, err)
	return err
}

func (s instrumentedImages) ImageFsInfo(ctx context.Context) (*runtimeapi.ImageFsInfoResponse, error) {
	start := time.Now()
	out, err := s.is.ImageFsInfo(ctx)
	s.ops.record("image_fs_info", start, err)
	return out, err
}
