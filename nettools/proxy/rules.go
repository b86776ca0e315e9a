package proxy

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The nftables mode's rules, as data: Ruleset turns a Model into chains of
// rules that nftables_linux.go programs with google/nftables and String
// prints in nft syntax (logged and written for operators, and what the
// unit tests read).

// TableName is the proxy's table (family ip). Nothing else writes it.
const TableName = "skiff-proxy"

// MasqueradeMark is the packet mark bit that asks nat-postrouting to
// masquerade (kube-proxy's bit).
const MasqueradeMark = 0x4000

// Balance is how an endpoint is chosen: random or round robin (numgen
// random or inc, as kube-proxy's nftables mode).
type Balance string

const (
	BalanceRandom     Balance = "random"
	BalanceRoundRobin Balance = "round-robin"
)

// Hook attaches a base chain.
type Hook struct {
	Type     string // nat, filter
	Hook     string // prerouting, output, postrouting, input, forward
	Priority int
}

// Chain is a chain of the table.
type Chain struct {
	Name  string
	Hook  *Hook // nil: a regular chain
	Rules []Rule
}

// Match is what a rule matches; zero fields match anything.
type Match struct {
	DAddr    netip.Addr
	Proto    corev1.Protocol
	DPort    uint16
	LocalDst bool   // fib daddr type local
	SAddrIn  string // ip saddr @set
	Marked   bool   // meta mark & MasqueradeMark != 0
	// Localnet: a packet to 127.0.0.0/8 that came in on another interface
	// than lo and was not DNATed (iifname != "lo" ip daddr 127.0.0.0/8
	// ct status & dnat == 0).
	Localnet bool
	// LoopbackSrc: ip saddr 127.0.0.0/8 (node port traffic from the node's
	// loopback, masqueraded whatever the traffic policy: the endpoint
	// could not answer 127.0.0.1).
	LoopbackSrc bool
}

// StmtKind is what a statement does.
type StmtKind int

const (
	StmtJump       StmtKind = iota + 1 // jump Chain
	StmtGoto                           // goto Chain
	StmtMark                           // meta mark |= MasqueradeMark
	StmtMasquerade                     // masquerade
	StmtDNAT                           // dnat to Endpoint
	StmtReject                         // tcp reset / icmp port unreachable
	StmtUpdateSet                      // update @Set { ip saddr }
	StmtPick                           // numgen mod len(Chains) vmap { i: goto Chains[i] }
	StmtDrop                           // drop
)

// Stmt is one statement of a rule.
type Stmt struct {
	Kind     StmtKind
	Chain    string
	Chains   []string
	Set      string
	Endpoint Endpoint
	Proto    corev1.Protocol // reject
}

// Rule is a match and its statements.
type Rule struct {
	Match Match
	Do    []Stmt
}

// AffinitySet is a set of client addresses with a timeout (one per
// endpoint of a Service with sessionAffinity ClientIP).
type AffinitySet struct {
	Name    string
	Timeout int32 // seconds
}

// Ruleset is the whole table.
type Ruleset struct {
	Balance Balance
	Chains  []Chain
	Sets    []AffinitySet
}

// Rules turns a model into the table's contents.
//
//   - nat-prerouting and nat-output jump to "hostports" (pods' hostPort
//     mappings: DNAT to the pod, masqueraded), then to "services": one rule per
//     cluster IP port going to the port's chain, then node ports (fib
//     daddr type local) through "nodeports".
//   - a service port's chain remembers affinity (ip saddr @set goto the
//     endpoint's chain), else picks an endpoint with numgen.
//   - an endpoint's chain updates the affinity set, marks traffic to local
//     endpoints for masquerade and DNATs.
//   - node port traffic is marked for masquerade unless
//     externalTrafficPolicy is Local.
//   - filter chains (priority -110, before DNAT) reject traffic to service
//     ports with no ready endpoints: a TCP reset or an ICMP port
//     unreachable, so that clients fail at once.
//   - nat-postrouting masquerades marked packets. Without br_netfilter a
//     reply from an endpoint on the node's own bridge would go straight
//     back to the client pod and skip the reverse NAT; masquerading
//     traffic to local endpoints makes the reply come back through the
//     node. Endpoints of no node (the masters behind the kubernetes
//     Service) are masqueraded too: their hosts need no route to pods.
func Rules(m *Model, balance Balance) *Ruleset {
	if balance == "" {
		balance = BalanceRandom
	}
	rs := &Ruleset{Balance: balance}
	base := []Chain{
		{Name: "nat-prerouting", Hook: &Hook{"nat", "prerouting", -100}, Rules: []Rule{{Do: []Stmt{{Kind: StmtJump, Chain: "hostports"}}}, {Do: []Stmt{{Kind: StmtJump, Chain: "services"}}}}},
		{Name: "nat-output", Hook: &Hook{"nat", "output", -100}, Rules: []Rule{{Do: []Stmt{{Kind: StmtJump, Chain: "hostports"}}}, {Do: []Stmt{{Kind: StmtJump, Chain: "services"}}}}},
		{Name: "nat-postrouting", Hook: &Hook{"nat", "postrouting", 100}, Rules: []Rule{{Match: Match{Marked: true}, Do: []Stmt{{Kind: StmtMasquerade}}}}},

		{Name: "filter-prerouting", Hook: &Hook{"filter", "prerouting", -110}, Rules: []Rule{{Do: []Stmt{{Kind: StmtJump, Chain: "no-endpoints"}}}}},
		{Name: "filter-output", Hook: &Hook{"filter", "output", -110}, Rules: []Rule{{Do: []Stmt{{Kind: StmtJump, Chain: "no-endpoints"}}}}},
		// Endpoints on the node's loopback (a master bound to 127.0.0.1)
		// are reached through route_localnet on the pod bridge; nothing
		// but such DNATed traffic may reach 127.0.0.0/8 from off the node
		// (kube-proxy's guard for CVE-2020-8558).
		{Name: "filter-input", Hook: &Hook{"filter", "input", 0}, Rules: []Rule{{Match: Match{Localnet: true}, Do: []Stmt{{Kind: StmtDrop}}}}},
	}
	services := Chain{Name: "services"}
	nodeports := Chain{Name: "nodeports"}
	noEndpoints := Chain{Name: "no-endpoints"}
	var own []Chain
	epChains := map[string]bool{}
	for i := range m.Ports {
		p := &m.Ports[i]
		id := p.ID()
		reject := []Stmt{{Kind: StmtReject, Proto: p.Protocol}}
		if eps := p.ClusterEndpoints(); len(eps) > 0 {
			svcChain := "svc-" + id
			services.Rules = append(services.Rules, Rule{Match: Match{DAddr: p.ClusterIP, Proto: p.Protocol, DPort: p.Port},
				Do: []Stmt{{Kind: StmtGoto, Chain: svcChain}}})
			own = append(own, Chain{Name: svcChain, Rules: pickRules(p, id, eps, false, false)})
		} else {
			noEndpoints.Rules = append(noEndpoints.Rules, Rule{Match: Match{DAddr: p.ClusterIP, Proto: p.Protocol, DPort: p.Port}, Do: reject})
		}
		if p.NodePort != 0 || len(p.LoadBalancerIPs) > 0 {
			if eps := p.ExternalEndpoints(); len(eps) > 0 {
				extChain := "ext-" + id
				if p.NodePort != 0 {
					nodeports.Rules = append(nodeports.Rules, Rule{Match: Match{Proto: p.Protocol, DPort: p.NodePort},
						Do: []Stmt{{Kind: StmtGoto, Chain: extChain}}})
				}
				// Load balancer addresses: as the cluster IP, to the
				// external endpoints (kube-proxy's rule for them).
				for _, ip := range p.LoadBalancerIPs {
					services.Rules = append(services.Rules, Rule{Match: Match{DAddr: ip, Proto: p.Protocol, DPort: p.Port},
						Do: []Stmt{{Kind: StmtGoto, Chain: extChain}}})
				}
				own = append(own, Chain{Name: extChain, Rules: pickRules(p, id, eps, true, !p.ExternalLocal)})
			} else {
				if p.NodePort != 0 {
					noEndpoints.Rules = append(noEndpoints.Rules, Rule{Match: Match{LocalDst: true, Proto: p.Protocol, DPort: p.NodePort}, Do: reject})
				}
				for _, ip := range p.LoadBalancerIPs {
					noEndpoints.Rules = append(noEndpoints.Rules, Rule{Match: Match{DAddr: ip, Proto: p.Protocol, DPort: p.Port}, Do: reject})
				}
			}
		}
		for _, e := range p.Endpoints {
			name := endpointChain(id, e)
			if epChains[name] {
				continue
			}
			epChains[name] = true
			var do []Stmt
			if p.AffinitySeconds > 0 {
				set := affinitySet(id, e)
				rs.Sets = append(rs.Sets, AffinitySet{Name: set, Timeout: p.AffinitySeconds})
				do = append(do, Stmt{Kind: StmtUpdateSet, Set: set})
			}
			if e.Masquerade {
				do = append(do, Stmt{Kind: StmtMark})
			}
			do = append(do, Stmt{Kind: StmtDNAT, Endpoint: e, Proto: p.Protocol})
			own = append(own, Chain{Name: name, Rules: []Rule{{Do: do}}})
		}
	}
	services.Rules = append(services.Rules, Rule{Match: Match{LocalDst: true}, Do: []Stmt{{Kind: StmtJump, Chain: "nodeports"}}})
	hostports := Chain{Name: "hostports", Rules: hostPortRules(m.HostPorts)}
	rs.Chains = append(base, hostports, services, nodeports, noEndpoints)
	rs.Chains = append(rs.Chains, own...)
	return rs
}

// pickRules: affinity first, then a balanced pick among eps.
func pickRules(p *ServicePort, id string, eps []Endpoint, ext, mark bool) []Rule {
	var rules []Rule
	if mark {
		rules = append(rules, Rule{Do: []Stmt{{Kind: StmtMark}}})
	} else if ext {
		rules = append(rules, Rule{Match: Match{LoopbackSrc: true}, Do: []Stmt{{Kind: StmtMark}}})
	}
	var chains []string
	for _, e := range eps {
		c := endpointChain(id, e)
		chains = append(chains, c)
		if p.AffinitySeconds > 0 {
			rules = append(rules, Rule{Match: Match{SAddrIn: affinitySet(id, e)}, Do: []Stmt{{Kind: StmtGoto, Chain: c}}})
		}
	}
	return append(rules, Rule{Do: []Stmt{{Kind: StmtPick, Chains: chains}}})
}

func endpointChain(id string, e Endpoint) string { return "ep-" + id + "-" + e.String() }
func affinitySet(id string, e Endpoint) string   { return "aff-" + id + "-" + e.String() }

// String prints the ruleset in nft syntax (as `nft list table ip
// skiff-proxy` would, give or take the formatting).
func (rs *Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table ip %s {\n", TableName)
	for _, s := range rs.Sets {
		fmt.Fprintf(&b, "\tset %q {\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout %ds\n\t}\n", s.Name, s.Timeout)
	}
	for _, c := range rs.Chains {
		fmt.Fprintf(&b, "\tchain %q {\n", c.Name)
		if h := c.Hook; h != nil {
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %d; policy accept;\n", h.Type, h.Hook, h.Priority)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r.String(rs.Balance))
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// String prints one rule in nft syntax.
func (r Rule) String(balance Balance) string {
	var parts []string
	m := r.Match
	if m.DAddr.IsValid() {
		parts = append(parts, "ip daddr "+m.DAddr.String())
	}
	if m.LocalDst {
		parts = append(parts, "fib daddr type local")
	}
	if m.SAddrIn != "" {
		parts = append(parts, fmt.Sprintf("ip saddr @%q", m.SAddrIn))
	}
	if m.Marked {
		parts = append(parts, fmt.Sprintf("meta mark & 0x%x != 0", MasqueradeMark))
	}
	if m.LoopbackSrc {
		parts = append(parts, "ip saddr 127.0.0.0/8")
	}
	if m.Localnet {
		parts = append(parts, `iifname != "lo" ip daddr 127.0.0.0/8 ct status & dnat == 0`)
	}
	if m.Proto != "" {
		parts = append(parts, "meta l4proto "+strings.ToLower(string(m.Proto)))
	}
	if m.DPort != 0 {
		parts = append(parts, fmt.Sprintf("th dport %d", m.DPort))
	}
	for _, s := range r.Do {
		switch s.Kind {
		case StmtJump:
			parts = append(parts, fmt.Sprintf("jump %q", s.Chain))
		case StmtGoto:
			parts = append(parts, fmt.Sprintf("goto %q", s.Chain))
		case StmtMark:
			parts = append(parts, fmt.Sprintf("meta mark set meta mark | 0x%x", MasqueradeMark))
		case StmtMasquerade:
			parts = append(parts, "masquerade")
		case StmtDrop:
			parts = append(parts, "drop")
		case StmtDNAT:
			parts = append(parts, "dnat to "+s.Endpoint.String())
		case StmtReject:
			if s.Proto == corev1.ProtocolTCP {
				parts = append(parts, "reject with tcp reset")
			} else {
				parts = append(parts, "reject with icmp type port-unreachable")
			}
		case StmtUpdateSet:
			parts = append(parts, fmt.Sprintf("update @%q { ip saddr }", s.Set))
		case StmtPick:
			gen := "random"
			if balance == BalanceRoundRobin {
				gen = "inc"
			}
			var elems []string
			for i, c := range s.Chains {
				elems = append(elems, fmt.Sprintf("%d : goto %q", i, c))
			}
			parts = append(parts, fmt.Sprintf("numgen %s mod %d vmap { %s }", gen, len(s.Chains), strings.Join(elems, ", ")))
		}
	}
	return strings.Join(parts, " ")
}
