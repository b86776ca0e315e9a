package stats

import (
	"github.com/prometheus/client_golang/prometheus"
)

// CadvisorMetrics is the kubelet's /metrics/cadvisor collector: cAdvisor's
// metric names and labels (container, id, image, name, namespace, pod),
// one set of series per container, per pod (container="") and for the
// node (id="/").
func CadvisorMetrics(p Provider) prometheus.Collector {
	c := &cadvisorCollector{p: p, descs: map[string]*prometheus.Desc{}}
	for _, m := range cadvisorMetrics {
		labels := append(append([]string{}, cadvisorLabels...), m.extra...)
		c.descs[m.name] = prometheus.NewDesc(m.name, m.help, labels, nil)
	}
	c.cores = prometheus.NewDesc("machine_cpu_cores", "Number of logical CPU cores.", nil, nil)
	c.memory = prometheus.NewDesc("machine_memory_bytes", "Amount of memory installed on the machine.", nil, nil)
	return c
}

var cadvisorLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

type cadvisorMetric struct {
	name, help string
	kind       prometheus.ValueType
	extra      []string
}

var cadvisorMetrics = []cadvisorMetric{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", prometheus.CounterValue, []string{"cpu"}},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", prometheus.CounterValue, nil},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", prometheus.CounterValue, nil},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", prometheus.CounterValue, nil},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", prometheus.CounterValue, nil},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", prometheus.CounterValue, nil},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", prometheus.GaugeValue, nil},
	{"container_memory_working_set_bytes", "Current working set in bytes.", prometheus.GaugeValue, nil},
	{"container_memory_rss", "Size of RSS in bytes.", prometheus.GaugeValue, nil},
	{"container_memory_cache", "Number of bytes of page cache memory.", prometheus.GaugeValue, nil},
	{"container_oom_events_total", "Count of out of memory events observed for the container", prometheus.CounterValue, nil},
	{"container_processes", "Number of processes running inside the container.", prometheus.GaugeValue, nil},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", prometheus.GaugeValue, nil},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", prometheus.GaugeValue, nil},
	{"container_last_seen", "Last time a container was seen by the exporter", prometheus.GaugeValue, nil},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received", prometheus.CounterValue, []string{"interface"}},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", prometheus.CounterValue, []string{"interface"}},
	{"container_network_receive_packets_total", "Cumulative count of packets received", prometheus.CounterValue, []string{"interface"}},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted", prometheus.CounterValue, []string{"interface"}},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", prometheus.CounterValue, []string{"interface"}},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", prometheus.CounterValue, []string{"interface"}},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", prometheus.CounterValue, []string{"interface"}},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", prometheus.CounterValue, []string{"interface"}},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", prometheus.GaugeValue, []string{"device"}},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", prometheus.GaugeValue, []string{"device"}},
	{"container_fs_inodes_total", "Number of Inodes", prometheus.GaugeValue, []string{"device"}},
	{"container_fs_inodes_free", "Number of available Inodes", prometheus.GaugeValue, []string{"device"}},
}

type cadvisorCollector struct {
	p             Provider
	descs         map[string]*prometheus.Desc
	cores, memory *prometheus.Desc
}

func (c *cadvisorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	ch <- c.cores
	ch <- c.memory
}

// cadvisorEmitter writes one cgroup's series.
type cadvisorEmitter struct {
	c      *cadvisorCollector
	s      *Snapshot
	ch     chan<- prometheus.Metric
	labels []string
}

func (e *cadvisorEmitter) emit(name string, v float64, extra ...string) {
	m := cadvisorMetricByName[name]
	lv := append(append(make([]string, 0, len(e.labels)+len(extra)), e.labels...), extra...)
	e.ch <- prometheus.NewMetricWithTimestamp(e.s.Time, prometheus.MustNewConstMetric(e.c.descs[name], m.kind, v, lv...))
}

var cadvisorMetricByName = func() map[string]cadvisorMetric {
	m := map[string]cadvisorMetric{}
	for _, x := range cadvisorMetrics {
		m[x.name] = x
	}
	return m
}()

func (e *cadvisorEmitter) common(c ContainerStatsCommon) {
	e.emit("container_cpu_usage_seconds_total", seconds(c.CPU.UsageNanoSeconds), "total")
	e.emit("container_cpu_user_seconds_total", seconds(c.CPU.UserNanoSeconds))
	e.emit("container_cpu_system_seconds_total", seconds(c.CPU.SystemNanoSeconds))
	if c.CPU.Periods > 0 { // only with a CFS quota, as cAdvisor
		e.emit("container_cpu_cfs_periods_total", float64(c.CPU.Periods))
		e.emit("container_cpu_cfs_throttled_periods_total", float64(c.CPU.ThrottledPeriods))
		e.emit("container_cpu_cfs_throttled_seconds_total", seconds(c.CPU.ThrottledNanoSeconds))
	}
	e.emit("container_memory_usage_bytes", float64(c.Memory.Usage))
	e.emit("container_memory_working_set_bytes", float64(c.Memory.WorkingSet))
	e.emit("container_memory_rss", float64(c.Memory.RSS))
	e.emit("container_memory_cache", float64(c.Memory.Cache))
	e.emit("container_oom_events_total", float64(c.Memory.OOMKills))
	e.emit("container_processes", float64(c.Processes))
	e.emit("container_last_seen", float64(e.s.Time.Unix()))
}

func (e *cadvisorEmitter) network(ifs []InterfaceStats) {
	for _, i := range ifs {
		e.emit("container_network_receive_bytes_total", float64(i.RxBytes), i.Name)
		e.emit("container_network_transmit_bytes_total", float64(i.TxBytes), i.Name)
		e.emit("container_network_receive_packets_total", float64(i.RxPackets), i.Name)
		e.emit("container_network_transmit_packets_total", float64(i.TxPackets), i.Name)
		e.emit("container_network_receive_errors_total", float64(i.RxErrors), i.Name)
		e.emit("container_network_transmit_errors_total", float64(i.TxErrors), i.Name)
		e.emit("container_network_receive_packets_dropped_total", float64(i.RxDrop), i.Name)
		e.emit("container_network_transmit_packets_dropped_total", float64(i.TxDrop), i.Name)
	}
}

func (e *cadvisorEmitter) fs(f FsStats) {
	if f.Measured.IsZero() {
		return
	}
	e.emit("container_fs_usage_bytes", float64(f.Used), f.Device)
	e.emit("container_fs_limit_bytes", float64(f.Capacity), f.Device)
	e.emit("container_fs_inodes_total", float64(f.Inodes), f.Device)
	e.emit("container_fs_inodes_free", float64(f.InodesFree), f.Device)
}

func (c *cadvisorCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Latest()
	if s == nil {
		return
	}
	n := &s.Node
	ch <- prometheus.MustNewConstMetric(c.cores, prometheus.GaugeValue, float64(n.NumCPUs))
	ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(n.MemoryCapacity))
	root := &cadvisorEmitter{c: c, s: s, ch: ch, labels: []string{"", "/", "", "", "", ""}}
	root.common(ContainerStatsCommon{CPU: n.CPU, Memory: n.Memory, Processes: n.Processes})
	root.network(n.Network)
	root.fs(n.Fs)
	for i := range s.Pods {
		p := &s.Pods[i]
		if p.Cgroup != "" {
			pe := &cadvisorEmitter{c: c, s: s, ch: ch, labels: []string{"", p.Cgroup, "", "", p.Namespace, p.Name}}
			pe.common(p.ContainerStatsCommon)
			pe.network(p.Network)
			if !p.StartTime.IsZero() {
				pe.emit("container_start_time_seconds", float64(p.StartTime.Unix()))
			}
		}
		for _, ct := range p.Containers {
			ce := &cadvisorEmitter{c: c, s: s, ch: ch, labels: []string{ct.Name, ct.Cgroup, ct.Image, ct.ID, p.Namespace, p.Name}}
			ce.common(ct.ContainerStatsCommon)
			ce.fs(ct.Rootfs)
			if ct.MemoryLimit > 0 {
				ce.emit("container_spec_memory_limit_bytes", float64(ct.MemoryLimit))
			}
			if !ct.StartTime.IsZero() {
				ce.emit("container_start_time_seconds", float64(ct.StartTime.UnixNano())/1e9)
			}
		}
	}
}
