package dns

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ptr[T any](v T) *T { return &v }

type testServer struct {
	t    testing.TB
	s    *Server
	src  *FakeSource
	addr string
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	return startServerTB(t, cfg)
}

func startServerB(b *testing.B, cfg Config) *testServer { return startServerTB(b, cfg) }

func startServerTB(t testing.TB, cfg Config) *testServer {
	t.Helper()
	src := NewFakeSource()
	if cfg.Source == nil {
		cfg.Source = src
	}
	cfg.Listen = []string{"127.0.0.1:0"}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return &testServer{t: t, s: s, src: src, addr: s.Addrs()[0].String()}
}

// query asks over UDP (no EDNS) and fails the test on transport errors.
func (ts *testServer) query(name string, qtype uint16) *dns.Msg {
	ts.t.Helper()
	return ts.exchange("udp", name, qtype)
}

func (ts *testServer) exchange(network, name string, qtype uint16) *dns.Msg {
	ts.t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, ts.addr)
	if err != nil {
		ts.t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

func service(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP, Ports: ports},
	}
}

type ep struct {
	ip, hostname string
	ready        *bool
}

func slice(ns, svc, name string, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.hostname != "" {
			x.Hostname = ptr(e.hostname)
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

// values renders the answer section as sorted "TYPE value" strings.
func values(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			out = append(out, "A "+v.A.String())
		case *dns.AAAA:
			out = append(out, "AAAA "+v.AAAA.String())
		case *dns.CNAME:
			out = append(out, "CNAME "+v.Target)
		case *dns.SRV:
			out = append(out, fmt.Sprintf("SRV %d %s", v.Port, v.Target))
		case *dns.PTR:
			out = append(out, "PTR "+v.Ptr)
		case *dns.SOA:
			out = append(out, "SOA "+v.Hdr.Name)
		case *dns.NS:
			out = append(out, "NS "+v.Ns)
		default:
			out = append(out, rr.String())
		}
	}
	sort.Strings(out)
	return out
}

func expect(t *testing.T, r *dns.Msg, rcode int, want ...string) {
	t.Helper()
	if r.Rcode != rcode {
		t.Fatalf("%s: rcode %s, want %s\n%v", r.Question[0].Name, dns.RcodeToString[r.Rcode], dns.RcodeToString[rcode], r)
	}
	got := values(r.Answer)
	sort.Strings(want)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("%s %s: answer %q, want %q", r.Question[0].Name, dns.TypeToString[r.Question[0].Qtype], got, want)
	}
	if len(r.Answer) == 0 {
		if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
			t.Fatalf("%s: negative answer without the zone's SOA in authority: %v", r.Question[0].Name, r.Ns)
		}
	}
}

func fixture(ts *testServer) {
	ts.src.SetService(service("default", "web", "10.43.0.20",
		corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		corev1.ServicePort{Port: 9000}))
	dual := service("default", "dual", "10.43.0.21")
	dual.Spec.ClusterIPs = []string{"10.43.0.21", "fd00:43::21"}
	ts.src.SetService(dual)
	hl := service("db", "pg", corev1.ClusterIPNone)
	ts.src.SetService(hl)
	ts.src.SetEndpointSlice(slice("db", "pg", "pg-abc",
		[]discoveryv1.EndpointPort{{Name: ptr("sql"), Port: ptr(int32(5432)), Protocol: ptr(corev1.ProtocolTCP)}},
		ep{ip: "10.42.0.5", hostname: "pg-0"}, ep{ip: "10.42.1.6", hostname: "pg-1", ready: ptr(true)},
		ep{ip: "10.42.2.7", ready: ptr(true)}, ep{ip: "10.42.3.8", hostname: "pg-3", ready: ptr(false)}))
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "web.default.svc.cluster.local"}}
	ts.src.SetService(ext)
	ts.src.SetService(service("default", "pending", ""))
	ts.s.Sync()
}

func TestClusterRecords(t *testing.T) {
	ts := startServer(t, Config{NameserverIP: "10.43.0.10"})
	fixture(ts)
	const d = ".svc.cluster.local."

	expect(t, ts.query("web.default"+d, dns.TypeA), dns.RcodeSuccess, "A 10.43.0.20")
	// Case does not matter; the answer keeps the asker's spelling.
	r := ts.query("WEB.Default.SVC.Cluster.Local.", dns.TypeA)
	expect(t, r, dns.RcodeSuccess, "A 10.43.0.20")
	if r.Answer[0].Header().Name != "WEB.Default.SVC.Cluster.Local." || !r.Authoritative || r.Answer[0].Header().Ttl != 5 {
		t.Fatalf("answer header: %v (aa=%v)", r.Answer[0].Header(), r.Authoritative)
	}
	// NODATA: the name exists, with no AAAA.
	expect(t, ts.query("web.default"+d, dns.TypeAAAA), dns.RcodeSuccess)
	expect(t, ts.query("dual.default"+d, dns.TypeAAAA), dns.RcodeSuccess, "AAAA fd00:43::21")
	expect(t, ts.query("dual.default"+d, dns.TypeA), dns.RcodeSuccess, "A 10.43.0.21")
	// NXDOMAIN for names that do not exist.
	expect(t, ts.query("nope.default"+d, dns.TypeA), dns.RcodeNameError)
	expect(t, ts.query("web.other"+d, dns.TypeA), dns.RcodeNameError)
	expect(t, ts.query("x.web.default"+d, dns.TypeA), dns.RcodeNameError)
	// Empty non-terminals and the zone itself: NODATA.
	expect(t, ts.query("default"+d, dns.TypeA), dns.RcodeSuccess)
	expect(t, ts.query("svc.cluster.local.", dns.TypeA), dns.RcodeSuccess)
	expect(t, ts.query("_http._tcp.web.default"+d[:len(d)-1]+".", dns.TypeA), dns.RcodeSuccess)
	expect(t, ts.query("cluster.local.", dns.TypeSOA), dns.RcodeSuccess, "SOA cluster.local.")
	expect(t, ts.query("cluster.local.", dns.TypeNS), dns.RcodeSuccess, "NS ns.dns.cluster.local.")
	expect(t, ts.query("ns.dns.cluster.local.", dns.TypeA), dns.RcodeSuccess, "A 10.43.0.10")
	// A Service without a ClusterIP yet exists with no data.
	expect(t, ts.query("pending.default"+d, dns.TypeA), dns.RcodeSuccess)

	// SRV for named ports only.
	r = ts.query("_http._tcp.web.default"+d, dns.TypeSRV)
	expect(t, r, dns.RcodeSuccess, "SRV 80 web.default.svc.cluster.local.")
	if got := values(r.Extra); len(got) != 1 || got[0] != "A 10.43.0.20" {
		t.Fatalf("SRV extra %v", got)
	}
	expect(t, ts.query("_dns._udp.web.default"+d, dns.TypeSRV), dns.RcodeSuccess, "SRV 53 web.default.svc.cluster.local.")
	expect(t, ts.query("_dns._tcp.web.default"+d, dns.TypeSRV), dns.RcodeNameError)
	expect(t, ts.query("web.default"+d, dns.TypeSRV), dns.RcodeSuccess,
		"SRV 80 web.default.svc.cluster.local.", "SRV 53 web.default.svc.cluster.local.")

	// Headless: every ready endpoint; names per endpoint.
	expect(t, ts.query("pg.db"+d, dns.TypeA), dns.RcodeSuccess, "A 10.42.0.5", "A 10.42.1.6", "A 10.42.2.7")
	expect(t, ts.query("pg-0.pg.db"+d, dns.TypeA), dns.RcodeSuccess, "A 10.42.0.5")
	expect(t, ts.query("10-42-2-7.pg.db"+d, dns.TypeA), dns.RcodeSuccess, "A 10.42.2.7")
	expect(t, ts.query("pg-3.pg.db"+d, dns.TypeA), dns.RcodeNameError) // not ready
	r = ts.query("_sql._tcp.pg.db"+d, dns.TypeSRV)
	expect(t, r, dns.RcodeSuccess, "SRV 5432 pg-0.pg.db.svc.cluster.local.", "SRV 5432 pg-1.pg.db.svc.cluster.local.",
		"SRV 5432 10-42-2-7.pg.db.svc.cluster.local.")
	if got := values(r.Extra); len(got) != 3 {
		t.Fatalf("headless SRV extras %v", got)
	}

	// ExternalName: CNAME, chased inside the zone.
	expect(t, ts.query("ext.default"+d, dns.TypeA), dns.RcodeSuccess, "CNAME web.default.svc.cluster.local.", "A 10.43.0.20")
	expect(t, ts.query("ext.default"+d, dns.TypeCNAME), dns.RcodeSuccess, "CNAME web.default.svc.cluster.local.")

	// Pods by address.
	expect(t, ts.query("10-42-0-9.default.pod.cluster.local.", dns.TypeA), dns.RcodeSuccess, "A 10.42.0.9")
	expect(t, ts.query("10-42-0-9.default.pod.cluster.local.", dns.TypeAAAA), dns.RcodeSuccess)
	expect(t, ts.query("fd00--1.default.pod.cluster.local.", dns.TypeAAAA), dns.RcodeSuccess, "AAAA fd00::1")
	expect(t, ts.query("10-42-0.default.pod.cluster.local.", dns.TypeA), dns.RcodeNameError)
	expect(t, ts.query("default.pod.cluster.local.", dns.TypeA), dns.RcodeSuccess)

	// PTR for ClusterIPs and headless endpoints.
	expect(t, ts.query("20.0.43.10.in-addr.arpa.", dns.TypePTR), dns.RcodeSuccess, "PTR web.default.svc.cluster.local.")
	expect(t, ts.query("5.0.42.10.in-addr.arpa.", dns.TypePTR), dns.RcodeSuccess, "PTR pg-0.pg.db.svc.cluster.local.")

	// Changes show up after the source notifies.
	ts.src.DeleteService("default", "web")
	waitFor(t, func() bool { return ts.query("web.default"+d, dns.TypeA).Rcode == dns.RcodeNameError })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOtherDomain(t *testing.T) {
	ts := startServer(t, Config{Domain: "Corp.Example"})
	ts.src.SetService(service("default", "web", "10.43.0.20"))
	ts.s.Sync()
	expect(t, ts.query("web.default.svc.corp.example.", dns.TypeA), dns.RcodeSuccess, "A 10.43.0.20")
	// cluster.local is not ours now: forwarded, and there is no upstream.
	if r := ts.query("web.default.svc.cluster.local.", dns.TypeA); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
}

func TestTruncationThenTCP(t *testing.T) {
	ts := startServer(t, Config{})
	ts.src.SetService(service("default", "big", corev1.ClusterIPNone))
	var eps []ep
	for i := 0; i < 100; i++ {
		eps = append(eps, ep{ip: fmt.Sprintf("10.42.%d.%d", i/250, i%250+2)})
	}
	ts.src.SetEndpointSlice(slice("default", "big", "big-1", nil, eps...))
	ts.s.Sync()
	name := "big.default.svc.cluster.local."
	r := ts.exchange("udp", name, dns.TypeA)
	if !r.Truncated || len(r.Answer) >= 100 {
		t.Fatalf("UDP answer: truncated=%v with %d records", r.Truncated, len(r.Answer))
	}
	r = ts.exchange("tcp", name, dns.TypeA)
	if r.Truncated || len(r.Answer) != 100 {
		t.Fatalf("TCP answer: truncated=%v with %d records", r.Truncated, len(r.Answer))
	}
	// A client that announces a large buffer gets everything over UDP.
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.SetEdns0(4096, false)
	r, _, err := (&dns.Client{Net: "udp", UDPSize: 4096}).Exchange(m, ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 100 || r.IsEdns0() == nil {
		t.Fatalf("EDNS answer: truncated=%v with %d records, opt=%v", r.Truncated, len(r.Answer), r.IsEdns0())
	}
}

func TestBadQueries(t *testing.T) {
	ts := startServer(t, Config{})
	c := &dns.Client{Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
	m.Opcode = dns.OpcodeUpdate
	r, _, err := c.Exchange(m, ts.addr)
	if err != nil || r.Rcode != dns.RcodeNotImplemented {
		t.Fatalf("update: %v %v", r, err)
	}
	m = new(dns.Msg)
	m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
	m.Question[0].Qclass = dns.ClassCHAOS
	r, _, err = c.Exchange(m, ts.addr)
	if err != nil || r.Rcode != dns.RcodeRefused {
		t.Fatalf("chaos class: %v %v", r, err)
	}
}

// fakeUpstream is a miekg server on 127.0.0.1 that answers example.com A
// with 192.0.2.1 (TTL 60), missing.example. NXDOMAIN with an SOA whose
// minimum is 2, big.example. with 60 addresses, and counts the queries.
type fakeUpstream struct {
	addr    string
	queries chan string
}

func startUpstream(t *testing.T) *fakeUpstream { return startUpstreamTB(t) }

func startUpstreamB(b *testing.B) *fakeUpstream { return startUpstreamTB(b) }

func startUpstreamTB(t testing.TB) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{queries: make(chan string, 1000)}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		select {
		case u.queries <- strings.ToLower(q.Name) + " " + dns.TypeToString[q.Qtype]:
		default:
		}
		m := new(dns.Msg)
		m.SetReply(r)
		switch strings.ToLower(q.Name) {
		case "example.com.":
			if q.Qtype == dns.TypeA {
				rr, _ := dns.NewRR(q.Name + " 60 IN A 192.0.2.1")
				m.Answer = append(m.Answer, rr)
			}
		case "big.example.":
			for i := 0; i < 60; i++ {
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A 192.0.2.%d", q.Name, i+1))
				m.Answer = append(m.Answer, rr)
			}
		default:
			m.Rcode = dns.RcodeNameError
			soa, _ := dns.NewRR("example. 300 IN SOA ns.example. host.example. 1 7200 1800 86400 2")
			m.Ns = append(m.Ns, soa)
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			size := dns.MinMsgSize
			if o := r.IsEdns0(); o != nil {
				size = int(o.UDPSize())
			}
			m.Truncate(size)
		}
		_ = w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown() })
	return u
}

func (u *fakeUpstream) count() int { return len(u.queries) }

func TestForwardingAndCache(t *testing.T) {
	up := startUpstream(t)
	// The first upstream refuses connections: the second one answers.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()
	ts := startServer(t, Config{Upstreams: []string{deadAddr, up.addr}, UpstreamTimeout: 500 * time.Millisecond})

	expect(t, ts.query("example.com.", dns.TypeA), dns.RcodeSuccess, "A 192.0.2.1")
	r := ts.query("EXAMPLE.com.", dns.TypeA)
	expect(t, r, dns.RcodeSuccess, "A 192.0.2.1")
	if r.Question[0].Name != "EXAMPLE.com." || !r.RecursionAvailable || r.Answer[0].Header().Ttl > 30 {
		t.Fatalf("cached answer: %v", r)
	}
	if n := up.count(); n != 1 {
		t.Fatalf("upstream saw %d queries, want 1 (second from cache)", n)
	}
	hits, misses := ts.s.CacheStats()
	if hits != 1 || misses != 1 {
		t.Fatalf("cache hits %d misses %d, want 1 and 1", hits, misses)
	}
	// Negative answers are cached too, for the SOA minimum (2 s).
	for i := 0; i < 3; i++ {
		r := ts.query("missing.example.", dns.TypeA)
		if r.Rcode != dns.RcodeNameError {
			t.Fatalf("missing.example.: %v", r)
		}
	}
	if n := up.count(); n != 2 {
		t.Fatalf("upstream saw %d queries, want 2", n)
	}
	waitFor(t, func() bool {
		ts.query("missing.example.", dns.TypeA)
		return up.count() == 3
	})
	// An upstream answer too large for UDP is fetched over TCP, and is
	// truncated again to the client's buffer.
	r = ts.exchange("udp", "big.example.", dns.TypeA)
	if !r.Truncated {
		t.Fatalf("big answer over UDP to a 512-byte client not truncated: %d records", len(r.Answer))
	}
	if r := ts.exchange("tcp", "big.example.", dns.TypeA); len(r.Answer) != 60 {
		t.Fatalf("big answer over TCP: %d records", len(r.Answer))
	}
	// ExternalName pointing outside: CNAME chased through the upstream.
	ts.src.SetService(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "ext"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"}})
	ts.s.Sync()
	expect(t, ts.query("ext.default.svc.cluster.local.", dns.TypeA), dns.RcodeSuccess, "CNAME example.com.", "A 192.0.2.1")
	// PTR of addresses that are not the cluster's go upstream.
	if r := ts.query("1.2.0.192.in-addr.arpa.", dns.TypePTR); r.Rcode != dns.RcodeNameError {
		t.Fatalf("foreign PTR: %v", r)
	}
}

func TestCacheBounded(t *testing.T) {
	c := newAnswerCache(3)
	now := time.Now()
	for i := 0; i < 5; i++ {
		m := new(dns.Msg)
		c.put(fmt.Sprint(i), m, now, now.Add(time.Minute))
	}
	if c.len() != 3 {
		t.Fatalf("cache holds %d entries, want 3", c.len())
	}
	if _, ok := c.get("0", now); ok {
		t.Fatal("oldest entry not evicted")
	}
	if _, ok := c.get("4", now); !ok {
		t.Fatal("newest entry missing")
	}
	if _, ok := c.get("4", now.Add(2*time.Minute)); ok {
		t.Fatal("expired entry returned")
	}
	// TTLs count down with age.
	m := new(dns.Msg)
	rr, _ := dns.NewRR("a.example. 30 IN A 192.0.2.1")
	m.Answer = []dns.RR{rr}
	c.put("ttl", m, now, now.Add(30*time.Second))
	got, _ := c.get("ttl", now.Add(10*time.Second))
	if ttl := got.Answer[0].Header().Ttl; ttl != 20 {
		t.Fatalf("TTL after 10 s: %d, want 20", ttl)
	}
}

func TestUpstreamParsing(t *testing.T) {
	got, err := ParseUpstreams("1.1.1.1, 10.0.0.2:5353,[fd00::1]:53,fd00::2")
	if err != nil {
		t.Fatal(err)
	}
	want := "1.1.1.1:53 10.0.0.2:5353 [fd00::1]:53 [fd00::2]:53"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v want %s", got, want)
	}
	if _, err := ParseUpstreams("dns.google"); err == nil {
		t.Fatal("a host name was accepted")
	}
	path := t.TempDir() + "/resolv.conf"
	if err := writeFile(path, "# c\nsearch example.com\nnameserver 192.0.2.53\nnameserver fd00::53\noptions ndots:2\n"); err != nil {
		t.Fatal(err)
	}
	got, err = UpstreamsFromResolvConf(path)
	if err != nil || strings.Join(got, " ") != "192.0.2.53:53 [fd00::53]:53" {
		t.Fatalf("resolv.conf upstreams %v %v", got, err)
	}
}

func TestConcurrentMissesShareOneQuery(t *testing.T) {
	// An upstream that answers only when released.
	release := make(chan struct{})
	var queries atomic.Int32
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		queries.Add(1)
		<-release
		m := new(dns.Msg)
		m.SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A 192.0.2.1")
		m.Answer = append(m.Answer, rr)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = up.ActivateAndServe() }()
	t.Cleanup(func() { _ = up.Shutdown() })
	ts := startServer(t, Config{Upstreams: []string{pc.LocalAddr().String()}, CacheSize: -1, UpstreamTimeout: 30 * time.Second})
	const n = 5
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := new(dns.Msg)
			m.SetQuestion("example.com.", dns.TypeA)
			r, _, err := (&dns.Client{Timeout: 30 * time.Second}).Exchange(m, ts.addr)
			if err != nil || len(r.Answer) != 1 {
				t.Errorf("answer %v %v", r, err)
			}
		}()
	}
	waitFor(t, func() bool { _, misses := ts.s.CacheStats(); return misses == n && queries.Load() == 1 })
	close(release)
	wg.Wait()
	if q := queries.Load(); q != 1 {
		t.Fatalf("upstream saw %d queries for %d concurrent questions, want 1", q, n)
	}
}

func TestOptionalAddressTaken(t *testing.T) {
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s, err := New(Config{Listen: []string{"127.0.0.1:0"}, Optional: []string{taken.LocalAddr().String()},
		Source: NewFakeSource(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("a taken optional address failed the start: %v", err)
	}
	defer s.Stop()
	if n := len(s.Addrs()); n != 1 {
		t.Fatalf("serving %d addresses, want 1", n)
	}
	s2, _ := New(Config{Listen: []string{taken.LocalAddr().String()}, Source: NewFakeSource(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := s2.Start(); err == nil {
		s2.Stop()
		t.Fatal("a taken required address did not fail the start")
	}
}
