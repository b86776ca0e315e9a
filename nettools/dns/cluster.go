package dns

import (
	"net/netip"

	"github.com/miekg/dns"
)

// maxChase bounds CNAME chains followed inside the zone.
const maxChase = 8

// cluster answers a name inside the cluster domain: records, NODATA for
// names that exist without records of the asked type, NXDOMAIN for names
// that do not exist; both with the zone's SOA in the authority section.
func (s *Server) cluster(z *zone, r *dns.Msg, q dns.Question, name string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative, m.RecursionAvailable = true, true
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return m.SetRcode(r, dns.RcodeRefused)
	}
	answer, extra, ok := s.lookup(z, q.Name, name, q.Qtype, 0)
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	m.Answer, m.Extra = answer, extra
	if len(m.Answer) == 0 || !ok {
		m.Ns = []dns.RR{s.soa(z)}
	}
	return m
}

// lookup returns the records of name (lower-case; owner is the name as
// asked) and whether the name exists.
func (s *Server) lookup(z *zone, owner, name string, qtype uint16, depth int) (answer, extra []dns.RR, exists bool) {
	if name == z.domain {
		switch qtype {
		case dns.TypeSOA:
			return []dns.RR{s.soa(z)}, nil, true
		case dns.TypeNS, dns.TypeANY:
			ns := &dns.NS{Hdr: s.hdr(owner, dns.TypeNS), Ns: "ns.dns." + z.domain}
			return []dns.RR{ns}, s.nsGlue(z), true
		}
		return nil, nil, true
	}
	if name == "ns.dns."+z.domain && s.cfg.NameserverIP != "" {
		if a, err := netip.ParseAddr(s.cfg.NameserverIP); err == nil {
			return addrRecords(s, owner, []netip.Addr{a}, qtype), nil, true
		}
	}
	n := z.names[name]
	if n == nil {
		if a, ok := z.podAddr(name); ok {
			n = &node{addrs: []netip.Addr{a}}
		}
	}
	if n == nil {
		return nil, nil, z.exists[name] || z.isPodNamespace(name)
	}
	if n.cname != "" {
		cname := &dns.CNAME{Hdr: s.hdr(owner, dns.TypeCNAME), Target: n.cname}
		answer = []dns.RR{cname}
		if qtype == dns.TypeCNAME || depth >= maxChase {
			return answer, nil, true
		}
		if dns.IsSubDomain(z.domain, n.cname) {
			more, ex, _ := s.lookup(z, n.cname, n.cname, qtype, depth+1)
			return append(answer, more...), ex, true
		}
		if qtype == dns.TypeA || qtype == dns.TypeAAAA {
			if up, err := s.fwd.lookup(n.cname, qtype); err == nil && up.Rcode == dns.RcodeSuccess {
				answer = append(answer, up.Answer...)
			}
		}
		return answer, nil, true
	}
	switch qtype {
	case dns.TypeA, dns.TypeAAAA:
		answer = addrRecords(s, owner, n.addrs, qtype)
	case dns.TypeSRV:
		answer, extra = s.srvRecords(z, owner, n)
	case dns.TypeANY:
		answer = append(addrRecords(s, owner, n.addrs, dns.TypeA), addrRecords(s, owner, n.addrs, dns.TypeAAAA)...)
		srv, ex := s.srvRecords(z, owner, n)
		answer, extra = append(answer, srv...), ex
	}
	return answer, extra, true
}

func addrRecords(s *Server, owner string, addrs []netip.Addr, qtype uint16) []dns.RR {
	var out []dns.RR
	for _, a := range addrs {
		switch {
		case a.Is4() && (qtype == dns.TypeA):
			out = append(out, &dns.A{Hdr: s.hdr(owner, dns.TypeA), A: a.AsSlice()})
		case a.Is6() && (qtype == dns.TypeAAAA):
			out = append(out, &dns.AAAA{Hdr: s.hdr(owner, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return out
}

// srvRecords are n's SRV records, their targets' addresses as extras.
func (s *Server) srvRecords(z *zone, owner string, n *node) (answer, extra []dns.RR) {
	if len(n.srv) == 0 {
		return nil, nil
	}
	weight := uint16(max(100/len(n.srv), 1))
	seen := map[string]bool{}
	for _, t := range n.srv {
		answer = append(answer, &dns.SRV{Hdr: s.hdr(owner, dns.TypeSRV), Priority: 0, Weight: weight, Port: t.port, Target: t.target})
		if seen[t.target] {
			continue
		}
		seen[t.target] = true
		if tn := z.names[t.target]; tn != nil {
			extra = append(extra, addrRecords(s, t.target, tn.addrs, dns.TypeA)...)
			extra = append(extra, addrRecords(s, t.target, tn.addrs, dns.TypeAAAA)...)
		}
	}
	return answer, extra
}

func (s *Server) nsGlue(z *zone) []dns.RR {
	if s.cfg.NameserverIP == "" {
		return nil
	}
	a, err := netip.ParseAddr(s.cfg.NameserverIP)
	if err != nil {
		return nil
	}
	name := "ns.dns." + z.domain
	return append(addrRecords(s, name, []netip.Addr{a}, dns.TypeA), addrRecords(s, name, []netip.Addr{a}, dns.TypeAAAA)...)
}

func (s *Server) hdr(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: s.ttl}
}

// soa is the zone's SOA; its minimum (the negative-caching TTL) is the
// record TTL.
func (s *Server) soa(z *zone) dns.RR {
	return &dns.SOA{
		Hdr: s.hdr(z.domain, dns.TypeSOA),
		Ns:  "ns.dns." + z.domain, Mbox: "hostmaster." + z.domain,
		Serial: z.serial, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: s.ttl,
	}
}
