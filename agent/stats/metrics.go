package stats

import (
	"github.com/prometheus/client_golang/prometheus"
)

// ResourceMetrics is the kubelet's /metrics/resource collector: the series
// metrics-server reads, with the kubelet's names and labels, stamped with
// the snapshot's time.
func ResourceMetrics(p Provider) prometheus.Collector { return &resourceCollector{p: p} }

var (
	ctrLabels = []string{"container", "pod", "namespace"}
	podLabels = []string{"pod", "namespace"}

	nodeCPUDesc      = prometheus.NewDesc("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", nil, nil)
	nodeMemDesc      = prometheus.NewDesc("node_memory_working_set_bytes", "Current working set of the node in bytes", nil, nil)
	ctrCPUDesc       = prometheus.NewDesc("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", ctrLabels, nil)
	ctrMemDesc       = prometheus.NewDesc("container_memory_working_set_bytes", "Current working set of the container in bytes", ctrLabels, nil)
	ctrStartDesc     = prometheus.NewDesc("container_start_time_seconds", "Start time of the container since unix epoch in seconds", ctrLabels, nil)
	podCPUDesc       = prometheus.NewDesc("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", podLabels, nil)
	podMemDesc       = prometheus.NewDesc("pod_memory_working_set_bytes", "Current working set of the pod in bytes", podLabels, nil)
	scrapeErrDesc    = prometheus.NewDesc("scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
	resScrapeErrDesc = prometheus.NewDesc("resource_scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", nil, nil)
)

type resourceCollector struct{ p Provider }

func (c *resourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{nodeCPUDesc, nodeMemDesc, ctrCPUDesc, ctrMemDesc, ctrStartDesc, podCPUDesc, podMemDesc, scrapeErrDesc, resScrapeErrDesc} {
		ch <- d
	}
}

func (c *resourceCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Latest()
	failed := 0.0
	if s == nil || s.Errors > 0 {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.GaugeValue, failed)
	ch <- prometheus.MustNewConstMetric(resScrapeErrDesc, prometheus.GaugeValue, failed)
	if s == nil {
		return
	}
	at := func(m prometheus.Metric) prometheus.Metric { return prometheus.NewMetricWithTimestamp(s.Time, m) }
	ch <- at(prometheus.MustNewConstMetric(nodeCPUDesc, prometheus.CounterValue, seconds(s.Node.CPU.UsageNanoSeconds)))
	ch <- at(prometheus.MustNewConstMetric(nodeMemDesc, prometheus.GaugeValue, float64(s.Node.Memory.WorkingSet)))
	for i := range s.Pods {
		p := &s.Pods[i]
		if p.Cgroup != "" {
			ch <- at(prometheus.MustNewConstMetric(podCPUDesc, prometheus.CounterValue, seconds(p.CPU.UsageNanoSeconds), p.Name, p.Namespace))
			ch <- at(prometheus.MustNewConstMetric(podMemDesc, prometheus.GaugeValue, float64(p.Memory.WorkingSet), p.Name, p.Namespace))
		}
		for _, ct := range p.Containers {
			ch <- at(prometheus.MustNewConstMetric(ctrCPUDesc, prometheus.CounterValue, seconds(ct.CPU.UsageNanoSeconds), ct.Name, p.Name, p.Namespace))
			ch <- at(prometheus.MustNewConstMetric(ctrMemDesc, prometheus.GaugeValue, float64(ct.Memory.WorkingSet), ct.Name, p.Name, p.Namespace))
			if !ct.StartTime.IsZero() {
				ch <- at(prometheus.MustNewConstMetric(ctrStartDesc, prometheus.GaugeValue, float64(ct.StartTime.UnixNano())/1e9, ct.Name, p.Name, p.Namespace))
			}
		}
	}
}

func seconds(ns uint64) float64 { return float64(ns) / 1e9 }

// VolumeMetrics is the kubelet's kubelet_volume_stats_* series: one set
// per persistentVolumeClaim mounted on the node (a claim mounted by two
// pods counts once).
func VolumeMetrics(p Provider) prometheus.Collector { return &volumeCollector{p: p} }

var (
	pvcLabels      = []string{"namespace", "persistentvolumeclaim"}
	volCapDesc     = prometheus.NewDesc("kubelet_volume_stats_capacity_bytes", "Capacity in bytes of the volume", pvcLabels, nil)
	volAvailDesc   = prometheus.NewDesc("kubelet_volume_stats_available_bytes", "Number of available bytes in the volume", pvcLabels, nil)
	volUsedDesc    = prometheus.NewDesc("kubelet_volume_stats_used_bytes", "Number of used bytes in the volume", pvcLabels, nil)
	volInodesDesc  = prometheus.NewDesc("kubelet_volume_stats_inodes", "Maximum number of inodes in the volume", pvcLabels, nil)
	volIFreeDesc   = prometheus.NewDesc("kubelet_volume_stats_inodes_free", "Number of free inodes in the volume", pvcLabels, nil)
	volIUsedDesc   = prometheus.NewDesc("kubelet_volume_stats_inodes_used", "Number of used inodes in the volume", pvcLabels, nil)
	volumeDescList = []*prometheus.Desc{volCapDesc, volAvailDesc, volUsedDesc, volInodesDesc, volIFreeDesc, volIUsedDesc}
)

type volumeCollector struct{ p Provider }

func (c *volumeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range volumeDescList {
		ch <- d
	}
}

func (c *volumeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Latest()
	if s == nil {
		return
	}
	seen := map[[2]string]bool{}
	for i := range s.Pods {
		for _, v := range s.Pods[i].Volumes {
			key := [2]string{v.ClaimNamespace, v.ClaimName}
			if v.ClaimName == "" || seen[key] {
				continue
			}
			seen[key] = true
			for j, val := range []uint64{v.Capacity, v.Available, v.Used, v.Inodes, v.InodesFree, v.InodesUsed} {
				ch <- prometheus.MustNewConstMetric(volumeDescList[j], prometheus.GaugeValue, float64(val), v.ClaimNamespace, v.ClaimName)
			}
		}
	}
}
