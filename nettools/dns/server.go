// Package dns is Skiff's cluster DNS, the part of the agent that CoreDNS is
// in Kubernetes: an authoritative server for the cluster domain built from
// the Services and EndpointSlices the agent watches, which forwards every
// other name to the node's upstream resolvers through a bounded cache.
//
// Names (domain cluster.local by default, TTL 5 s):
//
//	<svc>.<ns>.svc.<domain>                 A/AAAA: the ClusterIPs; headless: every ready endpoint address
//	<host>.<svc>.<ns>.svc.<domain>          headless endpoint (hostname, else the dashed address)
//	_<port>._<proto>.<svc>.<ns>.svc.<domain> SRV for named ports
//	<a-b-c-d>.<ns>.pod.<domain>              A of the address in the name
//	ExternalName Services                   CNAME to spec.externalName (chased)
//	reverse names of ClusterIPs and headless endpoint addresses: PTR
package dns

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skiff-io/skiff/nettools"
)

// minRebuildGap is the least time between two index rebuilds.
const minRebuildGap = 50 * time.Millisecond

// Config configures a Server.
type Config struct {
	// Domain is the cluster domain, default cluster.local.
	Domain string
	// Listen are the host:port addresses served over UDP and TCP.
	Listen []string
	// Optional are addresses served when they can be opened (another
	// server may hold the port); a failure is logged, not returned.
	Optional []string
	// NetNS is the network namespace (a path) the sockets are opened in;
	// this process's when empty (tests serve inside a namespace of their
	// own).
	NetNS string
	// Upstreams are the resolvers (host:port) other names go to; none
	// answers SERVFAIL for them.
	Upstreams []string
	// TTL of cluster records, default 5 s (SOA minimum too).
	TTL time.Duration
	// CacheSize bounds the upstream answer cache (entries, default
	// 10000; negative disables it); CacheTTL caps how long an answer is
	// kept (default 30 s, positive and negative).
	CacheSize int
	CacheTTL  time.Duration
	// UpstreamTimeout per upstream attempt, default 2 s.
	UpstreamTimeout time.Duration
	// NameserverIP is the address the zone's NS record names (the cluster
	// DNS IP); optional.
	NameserverIP string

	Source Source
	Logger *slog.Logger
	// Registerer takes CoreDNS's request metrics (metrics.go); nil: kept,
	// not served.
	Registerer prometheus.Registerer
}

// Server answers DNS queries. Create it with New, then Start.
type Server struct {
	cfg    Config
	log    *slog.Logger
	domain string
	ttl    uint32
	fwd    *forwarder
	// metrics: CoreDNS's request metrics (metrics.go).
	metrics *metrics

	zone    atomic.Pointer[zone]
	rebuild chan struct{}
	// syncMu orders rebuilds, so that an older listing never replaces a
	// newer index.
	syncMu sync.Mutex

	mu      sync.Mutex
	servers []*dns.Server
	addrs   []net.Addr
	wg      sync.WaitGroup
	stop    chan struct{}
}

// New validates cfg and returns a Server that serves nothing yet.
func New(cfg Config) (*Server, error) {
	if cfg.Domain == "" {
		cfg.Domain = "cluster.local"
	}
	if _, ok := dns.IsDomainName(cfg.Domain); !ok {
		return nil, fmt.Errorf("cluster domain %q is not a domain name", cfg.Domain)
	}
	if cfg.Source == nil {
		return nil, errors.New("dns: no source")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10000
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = 30 * time.Second
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, u := range cfg.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			return nil, fmt.Errorf("upstream %q: %w", u, err)
		}
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "dns"),
		domain:  dns.CanonicalName(cfg.Domain),
		metrics: newMetrics(cfg.Registerer),
		ttl:     uint32(cfg.TTL / time.Second),
		rebuild: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	if s.ttl == 0 {
		s.ttl = 1
	}
	s.fwd = newForwarder(cfg.Upstreams, cfg.UpstreamTimeout, cfg.CacheSize, cfg.CacheTTL)
	s.zone.Store(buildZone(s.domain, nil, nil))
	cfg.Source.OnChange(func() {
		select {
		case s.rebuild <- struct{}{}:
		default:
		}
	})
	return s, nil
}

// Start listens on every configured address (UDP and TCP), builds the
// first index and serves until Stop. Addresses whose port is 0 get one;
// Addrs tells which.
func (s *Server) Start() error {
	for _, addr := range s.cfg.Listen {
		if err := s.open(addr); err != nil {
			s.Stop()
			return err
		}
	}
	for _, addr := range s.cfg.Optional {
		if err := s.open(addr); err != nil {
			s.log.Warn("optional DNS address not served", "addr", addr, "err", err)
		}
	}
	s.Sync()
	s.wg.Add(1)
	go s.rebuildLoop()
	return nil
}

// open listens on addr (inside cfg.NetNS if set) and serves it.
func (s *Server) open(addr string) error {
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	open := func() error { pc, ln, err = listen(addr); return err }
	if s.cfg.NetNS != "" {
		err = nettools.Do(s.cfg.NetNS, open)
	} else {
		err = open()
	}
	if err != nil {
		return err
	}
	s.serve(pc, ln)
	return nil
}

// listen opens the UDP socket and a TCP listener on the same port.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dns listen udp %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		return nil, nil, fmt.Errorf("dns listen tcp %s: %w", pc.LocalAddr(), err)
	}
	return pc, ln, nil
}

func (s *Server) serve(pc net.PacketConn, ln net.Listener) {
	udp := &dns.Server{PacketConn: pc, Handler: s, UDPSize: dns.DefaultMsgSize}
	tcp := &dns.Server{Listener: ln, Handler: s, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	s.mu.Lock()
	s.servers = append(s.servers, udp, tcp)
	s.addrs = append(s.addrs, pc.LocalAddr())
	s.mu.Unlock()
	for _, srv := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				s.log.Error("dns server stopped", "addr", pc.LocalAddr(), "err", err)
			}
		}()
		<-started
	}
	s.log.Info("cluster DNS listening", "addr", pc.LocalAddr(), "domain", strings.TrimSuffix(s.domain, "."))
}

// Addrs are the UDP addresses served (the TCP ports are the same).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// Stop ends serving and waits for the serving goroutines.
func (s *Server) Stop() {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	for _, srv := range servers {
		_ = srv.Shutdown()
	}
	s.wg.Wait()
}

// Sync rebuilds the index from the source now.
func (s *Server) Sync() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	svcs, slices, err := s.cfg.Source.List()
	if err != nil {
		s.log.Warn("dns index not rebuilt", "err", err)
		return
	}
	z := buildZone(s.domain, svcs, slices)
	z.serial = uint32(time.Now().Unix())
	s.zone.Store(z)
}

// rebuildLoop rebuilds the index after changes; a burst of changes makes
// one rebuild. Rebuilds are spaced by at least twice the last one's
// duration (and minRebuildGap), so that endpoint churn in a large cluster
// costs a node at most a third of a core.
func (s *Server) rebuildLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.rebuild:
		}
		start := time.Now()
		s.Sync()
		gap := max(2*time.Since(start), minRebuildGap)
		select {
		case <-s.stop:
			return
		case <-time.After(gap):
		}
	}
}

// CacheStats reports the upstream cache's hits and misses.
func (s *Server) CacheStats() (hits, misses uint64) {
	return s.fwd.hits.Load(), s.fwd.misses.Load()
}

// Ready reports whether the source has synced (before that, cluster names
// may be missing).
func (s *Server) Ready() bool { return s.cfg.Source.Synced() }

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	start := time.Now()
	m := s.answer(r)
	defer s.metrics.observe(s, w, r, m, start)
	size := dns.MaxMsgSize // TCP
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size = dns.MinMsgSize
		if opt := r.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
	}
	// Compressed if it does not fit otherwise; TC set if it still does not.
	m.Truncate(size)
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns write", "err", err)
	}
}

// answer builds the reply to r.
func (s *Server) answer(r *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	if r.Opcode != dns.OpcodeQuery {
		return m.SetRcode(r, dns.RcodeNotImplemented)
	}
	if len(r.Question) != 1 {
		return m.SetRcode(r, dns.RcodeFormatError)
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	z := s.zone.Load()
	var reply *dns.Msg
	switch {
	case dns.IsSubDomain(z.domain, name):
		reply = s.cluster(z, r, q, name)
	case q.Qtype == dns.TypePTR && len(z.ptr[name]) > 0:
		reply = s.reverse(z, r, q, name)
	default:
		reply = s.fwd.forward(r)
	}
	if opt := r.IsEdns0(); opt != nil && reply.IsEdns0() == nil {
		reply.SetEdns0(dns.DefaultMsgSize, false)
	}
	return reply
}

func (s *Server) reverse(z *zone, r *dns.Msg, q dns.Question, name string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative, m.RecursionAvailable = true, true
	for _, t := range z.ptr[name] {
		m.Answer = append(m.Answer, &dns.PTR{Hdr: s.hdr(q.Name, dns.TypePTR), Ptr: t})
	}
	return m
}
