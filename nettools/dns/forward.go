package dns

import (
	"container/list"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// errNoUpstream: names outside the cluster cannot be resolved.
var errNoUpstream = errors.New("no upstream resolver")

// negativeTTL is how long a negative answer without an SOA is cached.
const negativeTTL = 5 * time.Second

// forwarder sends names outside the cluster domain to the upstream
// resolvers, in order (starting from the last one that answered), over UDP
// and over TCP when the answer was truncated; answers are cached.
type forwarder struct {
	upstreams []string
	udp, tcp  *dns.Client
	cache     *answerCache // nil: no cache
	maxTTL    time.Duration
	preferred atomic.Uint32

	// inflight shares one upstream query among concurrent misses of the
	// same question.
	mu       sync.Mutex
	inflight map[string]*call

	hits, misses atomic.Uint64
}

func newForwarder(upstreams []string, timeout time.Duration, cacheSize int, maxTTL time.Duration) *forwarder {
	f := &forwarder{
		upstreams: upstreams,
		udp:       &dns.Client{Net: "udp", Timeout: timeout, UDPSize: dns.DefaultMsgSize},
		tcp:       &dns.Client{Net: "tcp", Timeout: timeout},
		maxTTL:    maxTTL,
		inflight:  map[string]*call{},
	}
	if cacheSize > 0 {
		f.cache = newAnswerCache(cacheSize)
	}
	return f
}

type call struct {
	done chan struct{}
	msg  *dns.Msg
	err  error
}

// forward answers r from the cache or an upstream; SERVFAIL if none
// answered.
func (f *forwarder) forward(r *dns.Msg) *dns.Msg {
	q := r.Question[0]
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	up, err := f.resolve(q.Name, q.Qtype, q.Qclass, do, r.CheckingDisabled)
	if err != nil {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeServerFailure)
		m.RecursionAvailable = true
		return m
	}
	up.Id = r.Id
	up.Response = true
	up.Opcode = r.Opcode
	up.RecursionDesired = r.RecursionDesired
	up.RecursionAvailable = true
	up.Question = []dns.Question{q} // the asker's spelling
	return up
}

// lookup resolves name upstream (for CNAME chasing).
func (f *forwarder) lookup(name string, qtype uint16) (*dns.Msg, error) {
	return f.resolve(name, qtype, dns.ClassINET, false, false)
}

// resolve returns a private copy of the answer to (name, qtype, qclass),
// without an OPT record.
func (f *forwarder) resolve(name string, qtype, qclass uint16, do, cd bool) (*dns.Msg, error) {
	name = strings.ToLower(dns.Fqdn(name))
	key := fmt.Sprintf("%s/%d/%d/%t/%t", name, qtype, qclass, do, cd)
	now := time.Now()
	if f.cache != nil {
		if m, ok := f.cache.get(key, now); ok {
			f.hits.Add(1)
			return m, nil
		}
	}
	f.misses.Add(1)
	if len(f.upstreams) == 0 {
		return nil, errNoUpstream
	}
	f.mu.Lock()
	if c, ok := f.inflight[key]; ok {
		f.mu.Unlock()
		<-c.done
		if c.err != nil {
			return nil, c.err
		}
		return c.msg.Copy(), nil
	}
	c := &call{done: make(chan struct{})}
	f.inflight[key] = c
	f.mu.Unlock()
	c.msg, c.err = f.query(key, name, qtype, qclass, do, cd, now)
	f.mu.Lock()
	delete(f.inflight, key)
	f.mu.Unlock()
	close(c.done)
	if c.err != nil {
		return nil, c.err
	}
	return c.msg.Copy(), nil
}

// query asks the upstreams and caches the answer.
func (f *forwarder) query(key, name string, qtype, qclass uint16, do, cd bool, now time.Time) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.Question[0].Qclass = qclass
	q.RecursionDesired = true
	q.CheckingDisabled = cd
	q.SetEdns0(dns.DefaultMsgSize, do)

	var (
		last    *dns.Msg
		lastErr error
	)
	start := int(f.preferred.Load()) % len(f.upstreams)
	for i := range f.upstreams {
		idx := (start + i) % len(f.upstreams)
		resp, err := f.exchange(q, f.upstreams[idx])
		if err != nil {
			lastErr = err
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			last = resp
			continue
		}
		f.preferred.Store(uint32(idx))
		stripOPT(resp)
		if ttl := f.cacheTTL(resp); ttl > 0 {
			// Nobody is told to keep an answer longer than this cache
			// does.
			capTTL(resp, uint32(f.maxTTL/time.Second))
			if f.cache != nil {
				f.cache.put(key, resp.Copy(), now, now.Add(ttl))
			}
		}
		return resp, nil
	}
	if last != nil {
		stripOPT(last)
		return last, nil
	}
	return nil, fmt.Errorf("upstreams %v: %w", f.upstreams, lastErr)
}

func (f *forwarder) exchange(q *dns.Msg, addr string) (*dns.Msg, error) {
	resp, _, err := f.udp.Exchange(q, addr)
	if err == nil && resp.Truncated {
		resp, _, err = f.tcp.Exchange(q, addr)
	}
	if err != nil {
		return nil, err
	}
	if resp.Id != q.Id {
		return nil, fmt.Errorf("upstream %s: answer for another query", addr)
	}
	return resp, nil
}

func capTTL(m *dns.Msg, max uint32) {
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Ttl > max {
				h.Ttl = max
			}
		}
	}
}

func stripOPT(m *dns.Msg) {
	out := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr)
		}
	}
	m.Extra = out
}

// cacheTTL is how long resp may be cached: the smallest TTL of its records
// (positive answers), the SOA minimum (negative answers), capped at
// maxTTL; 0 for answers not to cache (errors, truncated).
func (f *forwarder) cacheTTL(resp *dns.Msg) time.Duration {
	if resp.Truncated {
		return 0
	}
	var ttl time.Duration
	switch {
	case resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0:
		ttl = f.maxTTL
		for _, rr := range append(append([]dns.RR(nil), resp.Answer...), resp.Ns...) {
			ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
		}
	case resp.Rcode == dns.RcodeSuccess || resp.Rcode == dns.RcodeNameError:
		ttl = negativeTTL
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				ttl = time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			}
		}
	default:
		return 0
	}
	return min(ttl, f.maxTTL)
}

// answerCache is a bounded LRU of upstream answers.
type answerCache struct {
	mu    sync.Mutex
	size  int
	ll    *list.List // front: most recently used
	items map[string]*list.Element
}

type cacheEntry struct {
	key     string
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

func newAnswerCache(size int) *answerCache {
	return &answerCache{size: size, ll: list.New(), items: map[string]*list.Element{}}
}

// get returns a copy of the entry with its TTLs counted down.
func (c *answerCache) get(key string, now time.Time) (*dns.Msg, bool) {
	c.mu.Lock()
	el, ok := c.items[key]
	if !ok {
		c.mu.Unlock()
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.ll.Remove(el)
		delete(c.items, key)
		c.mu.Unlock()
		return nil, false
	}
	c.ll.MoveToFront(el)
	c.mu.Unlock()
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			if h.Ttl > age {
				h.Ttl -= age
			} else {
				h.Ttl = 0
			}
		}
	}
	return m, true
}

func (c *answerCache) put(key string, m *dns.Msg, now, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		el.Value = &cacheEntry{key: key, msg: m, stored: now, expires: expires}
		c.ll.MoveToFront(el)
		return
	}
	c.items[key] = c.ll.PushFront(&cacheEntry{key: key, msg: m, stored: now, expires: expires})
	for c.ll.Len() > c.size {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
}

// len is the number of entries.
func (c *answerCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
