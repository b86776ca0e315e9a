package dns

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Benchmarks of queries/s and p99 latency against a server on 127.0.0.1,
// with a miekg client per goroutine (one UDP socket each, as a resolver
// library keeps): cluster names (an index of 1,000 Services) and upstream
// names answered from the cache.
//
//	go test -run '^$' -bench DNS -benchtime 200000x ./nettools/dns/

func BenchmarkDNSClusterName(b *testing.B) {
	ts := startServerB(b, Config{})
	for i := 0; i < 1000; i++ {
		ts.src.SetService(service("default", fmt.Sprintf("svc-%d", i), fmt.Sprintf("10.43.%d.%d", i/250, i%250+2),
			corev1.ServicePort{Name: "http", Port: 80}))
	}
	ts.s.Sync()
	runQueries(b, ts.addr, func(i int) string { return fmt.Sprintf("svc-%d.default.svc.cluster.local.", i%1000) })
}

func BenchmarkDNSCachedUpstream(b *testing.B) {
	up := startUpstreamB(b)
	ts := startServerB(b, Config{Upstreams: []string{up.addr}, UpstreamTimeout: 10 * time.Second})
	// Fill the cache before timing (an upstream miss is not what is
	// measured).
	if r := ts.query("example.com.", dns.TypeA); len(r.Answer) != 1 {
		b.Fatalf("warm-up: %v", r)
	}
	runQueries(b, ts.addr, func(int) string { return "example.com." })
	hits, misses := ts.s.CacheStats()
	b.ReportMetric(float64(hits)/float64(hits+misses)*100, "%hit")
}

func runQueries(b *testing.B, addr string, name func(int) string) {
	var (
		next atomic.Int64
		errs atomic.Int64
		mu   sync.Mutex
		lat  []time.Duration
	)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
		conn, err := c.Dial(addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer func() { conn.Close() }()
		var mine []time.Duration
		m := new(dns.Msg)
		for pb.Next() {
			i := int(next.Add(1))
			m.SetQuestion(name(i), dns.TypeA)
			start := time.Now()
			r, _, err := c.ExchangeWithConn(m, conn)
			mine = append(mine, time.Since(start))
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				// A lost datagram or a late answer (read as the next
				// one's): count it, and go on with a fresh socket.
				if errs.Add(1) == 1 {
					b.Logf("query %s: %v %v", name(i), r, err)
				}
				conn.Close()
				if conn, err = c.Dial(addr); err != nil {
					b.Error(err)
					return
				}
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	b.ReportMetric(float64(errs.Load()), "errors")
	if e := errs.Load(); e*1000 > int64(b.N) {
		b.Errorf("%d of %d queries failed", e, b.N)
	}
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
}

// BenchmarkDNSIndexRebuild is the cost of one index rebuild (after any
// change) for 1,000 headless Services of 10 endpoints plus 1,000 ClusterIP
// Services.
func BenchmarkDNSIndexRebuild(b *testing.B) {
	var (
		svcs   []*corev1.Service
		slices []*discoveryv1.EndpointSlice
	)
	ports := []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(80))}}
	for i := 0; i < 1000; i++ {
		svcs = append(svcs, service("default", fmt.Sprintf("svc-%d", i), fmt.Sprintf("10.43.%d.%d", i/250, i%250+2),
			corev1.ServicePort{Name: "http", Port: 80}))
		name := fmt.Sprintf("hl-%d", i)
		svcs = append(svcs, service("default", name, corev1.ClusterIPNone))
		var eps []ep
		for j := 0; j < 10; j++ {
			eps = append(eps, ep{ip: fmt.Sprintf("10.42.%d.%d", i/25, (i%25)*10+j+2), hostname: fmt.Sprintf("%s-%d", name, j)})
		}
		slices = append(slices, slice("default", name, name+"-x", ports, eps...))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		buildZone("cluster.local.", svcs, slices)
	}
}
