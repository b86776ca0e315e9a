package proxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/nettools"
)

// vipLabel marks the cluster IPs the userspace mode holds on the loopback
// (an address label must start with the device's name).
const vipLabel = "lo:skiffsvc"

// udpIdle is how long a UDP flow without packets keeps its socket.
const udpIdle = 30 * time.Second

// userspaceBackend accepts on every cluster IP (held as a /32 on the
// loopback) and node port, and forwards to the ready endpoints, round
// robin, with no kernel NAT rules. A service port with no ready endpoints
// has no listener, so its connections are refused by the kernel (TCP reset,
// ICMP port unreachable for UDP).
type userspaceBackend struct {
	netns string
	log   *slog.Logger

	mu        sync.Mutex
	frontends map[string]*frontend // by key (frontendKey)
}

// frontend is one listening address of a service port.
type frontend struct {
	key      string
	proto    corev1.Protocol
	addr     string // listen address
	affinity time.Duration

	eps atomic.Pointer[[]Endpoint]
	rr  atomic.Uint64

	affMu sync.Mutex
	aff   map[netip.Addr]affinityEntry

	flowMu sync.Mutex
	flows  map[string]*udpFlow // UDP flows by client address

	tcp    net.Listener
	udp    net.PacketConn
	closed chan struct{}
	wg     sync.WaitGroup
	log    *slog.Logger
	dial   func(network, addr string) (net.Conn, error)
}

type affinityEntry struct {
	ep   Endpoint
	seen time.Time
}

func newUserspaceBackend(ns string, log *slog.Logger) *userspaceBackend {
	return &userspaceBackend{netns: ns, log: log, frontends: map[string]*frontend{}}
}

// inNS runs fn in the proxy's network namespace.
func (b *userspaceBackend) inNS(fn func() error) error {
	if b.netns == "" {
		return fn()
	}
	return nettools.Do(b.netns, fn)
}

func (b *userspaceBackend) dial(network, addr string) (net.Conn, error) {
	var c net.Conn
	err := b.inNS(func() error {
		var err error
		c, err = net.DialTimeout(network, addr, 5*time.Second)
		return err
	})
	return c, err
}

func (b *userspaceBackend) handle() (*netlink.Handle, error) {
	if b.netns == "" {
		return netlink.NewHandle()
	}
	ns, err := netns.GetFromPath(b.netns)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// Sync makes the listeners and loopback addresses match m.
func (b *userspaceBackend) Sync(m *Model) error {
	type want struct {
		port  *ServicePort
		addr  string
		eps   []Endpoint
		proto corev1.Protocol
	}
	wanted := map[string]want{}
	vips := map[netip.Addr]bool{}
	for i := range m.Ports {
		p := &m.Ports[i]
		vips[p.ClusterIP] = true
		if eps := p.ClusterEndpoints(); len(eps) > 0 {
			addr := netip.AddrPortFrom(p.ClusterIP, p.Port).String()
			wanted[string(p.Protocol)+" "+addr] = want{p, addr, eps, p.Protocol}
		}
		if p.NodePort != 0 {
			if eps := p.ExternalEndpoints(); len(eps) > 0 {
				addr := fmt.Sprintf(":%d", p.NodePort)
				wanted[string(p.Protocol)+" "+addr] = want{p, addr, eps, p.Protocol}
			}
		}
	}
	if err := b.syncAddresses(vips); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for key, f := range b.frontends {
		if _, ok := wanted[key]; !ok {
			f.close()
			delete(b.frontends, key)
		}
	}
	for key, w := range wanted {
		f, ok := b.frontends[key]
		if !ok {
			var err error
			f, err = b.open(key, w.proto, w.addr, time.Duration(w.port.AffinitySeconds)*time.Second)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			b.frontends[key] = f
		}
		eps := append([]Endpoint(nil), w.eps...)
		f.eps.Store(&eps)
		f.dropGone(eps)
	}
	return errors.Join(errs...)
}

// syncAddresses holds exactly the cluster IPs in vips on the loopback.
func (b *userspaceBackend) syncAddresses(vips map[netip.Addr]bool) error {
	h, err := b.handle()
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	addrs, err := h.AddrList(lo, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	have := map[netip.Addr]bool{}
	for _, a := range addrs {
		if a.Label != vipLabel {
			continue
		}
		ip, _ := netip.AddrFromSlice(a.IP.To4())
		if !vips[ip] {
			if err := h.AddrDel(lo, &a); err != nil {
				return fmt.Errorf("remove %s from lo: %w", ip, err)
			}
			continue
		}
		have[ip] = true
	}
	for ip := range vips {
		if have[ip] {
			continue
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}, Label: vipLabel}
		if err := h.AddrAdd(lo, a); err != nil && !errors.Is(err, errExist) {
			return fmt.Errorf("add %s to lo: %w", ip, err)
		}
	}
	return nil
}

// Cleanup closes every listener and removes the loopback addresses.
func (b *userspaceBackend) Cleanup() error {
	b.mu.Lock()
	for k, f := range b.frontends {
		f.close()
		delete(b.frontends, k)
	}
	b.mu.Unlock()
	return b.syncAddresses(nil)
}

// Close stops the listeners and leaves the addresses (a restarted agent
// takes them over).
func (b *userspaceBackend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, f := range b.frontends {
		f.close()
		delete(b.frontends, k)
	}
}

func (b *userspaceBackend) Describe() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var lines []string
	for k, f := range b.frontends {
		var eps []string
		for _, e := range *f.eps.Load() {
			eps = append(eps, e.String())
		}
		lines = append(lines, fmt.Sprintf("%s -> %s", k, strings.Join(eps, ",")))
	}
	return strings.Join(lines, "\n")
}

func (b *userspaceBackend) open(key string, proto corev1.Protocol, addr string, affinity time.Duration) (*frontend, error) {
	f := &frontend{key: key, proto: proto, addr: addr, affinity: affinity, closed: make(chan struct{}),
		aff: map[netip.Addr]affinityEntry{}, flows: map[string]*udpFlow{}, log: b.log.With("frontend", key), dial: b.dial}
	err := b.inNS(func() error {
		var err error
		if proto == corev1.ProtocolUDP {
			f.udp, err = net.ListenPacket("udp4", addr)
		} else {
			f.tcp, err = net.Listen("tcp4", addr)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", key, err)
	}
	f.wg.Add(1)
	if f.udp != nil {
		go f.serveUDP()
	} else {
		go f.serveTCP()
	}
	return f, nil
}

func (f *frontend) close() {
	close(f.closed)
	if f.tcp != nil {
		f.tcp.Close()
	}
	if f.udp != nil {
		f.udp.Close()
	}
	f.wg.Wait()
}

// pick chooses an endpoint for a client: its affinity entry if still
// valid, else the next one round robin.
func (f *frontend) pick(client netip.Addr) (Endpoint, bool) {
	eps := *f.eps.Load()
	if len(eps) == 0 {
		return Endpoint{}, false
	}
	if f.affinity > 0 {
		f.affMu.Lock()
		defer f.affMu.Unlock()
		if e, ok := f.aff[client]; ok && time.Since(e.seen) < f.affinity {
			for _, ep := range eps {
				if ep == e.ep {
					f.aff[client] = affinityEntry{ep, time.Now()}
					return ep, true
				}
			}
		}
	}
	ep := eps[int(f.rr.Add(1)-1)%len(eps)]
	if f.affinity > 0 {
		f.aff[client] = affinityEntry{ep, time.Now()}
	}
	return ep, true
}

func clientAddr(a net.Addr) netip.Addr {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (f *frontend) serveTCP() {
	defer f.wg.Done()
	for {
		c, err := f.tcp.Accept()
		if err != nil {
			select {
			case <-f.closed:
				return
			default:
			}
			f.log.Warn("accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		go f.forwardTCP(c)
	}
}

func (f *frontend) forwardTCP(c net.Conn) {
	defer c.Close()
	ep, ok := f.pick(clientAddr(c.RemoteAddr()))
	if !ok {
		return
	}
	up, err := f.dial("tcp4", ep.String())
	if err != nil {
		f.log.Debug("dial endpoint", "endpoint", ep, "err", err)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset: the client sees a refusal
		}
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-done
	<-done
}

// udpFlow is one UDP client's socket to its endpoint.
type udpFlow struct {
	up   net.Conn
	ep   Endpoint
	last atomic.Int64
}

// dropGone closes the UDP flows whose endpoint is not in eps: their next
// packet picks a current endpoint.
func (f *frontend) dropGone(eps []Endpoint) {
	in := map[Endpoint]bool{}
	for _, e := range eps {
		in[e] = true
	}
	f.flowMu.Lock()
	defer f.flowMu.Unlock()
	for k, fl := range f.flows {
		if !in[fl.ep] {
			fl.up.Close()
			delete(f.flows, k)
		}
	}
}

func (f *frontend) serveUDP() {
	defer f.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := f.udp.ReadFrom(buf)
		if err != nil {
			select {
			case <-f.closed:
				f.flowMu.Lock()
				for k, fl := range f.flows {
					fl.up.Close()
					delete(f.flows, k)
				}
				f.flowMu.Unlock()
				return
			default:
			}
			continue
		}
		key := from.String()
		f.flowMu.Lock()
		fl := f.flows[key]
		f.flowMu.Unlock()
		if fl == nil {
			ep, ok := f.pick(clientAddr(from))
			if !ok {
				continue
			}
			up, err := f.dial("udp4", ep.String())
			if err != nil {
				continue
			}
			fl = &udpFlow{up: up, ep: ep}
			f.flowMu.Lock()
			f.flows[key] = fl
			f.flowMu.Unlock()
			go f.udpReplies(from, key, fl)
		}
		fl.last.Store(time.Now().UnixNano())
		_, _ = fl.up.Write(buf[:n])
	}
}

// udpReplies sends an endpoint's replies back to the client until the
// flow is idle for udpIdle or closed.
func (f *frontend) udpReplies(from net.Addr, key string, fl *udpFlow) {
	b := make([]byte, 65535)
	defer func() {
		fl.up.Close()
		f.flowMu.Lock()
		if f.flows[key] == fl {
			delete(f.flows, key)
		}
		f.flowMu.Unlock()
	}()
	for {
		_ = fl.up.SetReadDeadline(time.Now().Add(udpIdle))
		n, err := fl.up.Read(b)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || time.Since(time.Unix(0, fl.last.Load())) >= udpIdle {
				return
			}
			continue
		}
		_, _ = f.udp.WriteTo(b[:n], from)
	}
}
