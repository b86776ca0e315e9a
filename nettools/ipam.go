package nettools

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// ipam hands out addresses of a pod CIDR, one file per address in dir
// (named by the address, holding the owner's ID), so that a restarted agent
// never gives an address twice. The caller serializes calls.
type ipam struct {
	dir    string
	prefix netip.Prefix
}

// gateway is the first address of the prefix: the bridge's.
func (p *ipam) gateway() netip.Addr { return p.prefix.Masked().Addr().Next() }

// allocate returns owner's address, reusing one it already holds.
func (p *ipam) allocate(owner string) (netip.Addr, error) {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return netip.Addr{}, err
	}
	if a, ok, err := p.find(owner); err != nil || ok {
		return a, err
	}
	last := p.gateway()
	if b, err := os.ReadFile(filepath.Join(p.dir, "last")); err == nil {
		if a, err := netip.ParseAddr(strings.TrimSpace(string(b))); err == nil && p.prefix.Contains(a) {
			last = a
		}
	}
	// Round-robin from the last address given, so that a released address
	// is not reused at once (connections to the old pod may linger).
	size := 1 << (p.prefix.Addr().BitLen() - p.prefix.Bits())
	a := last
	for range size + 1 {
		a = a.Next()
		if !p.prefix.Contains(a) {
			a = p.gateway()
			continue
		}
		if !p.usable(a) {
			continue
		}
		f, err := os.OpenFile(filepath.Join(p.dir, a.String()), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return netip.Addr{}, err
		}
		_, werr := f.WriteString(owner)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(f.Name())
			return netip.Addr{}, werr
		}
		_ = os.WriteFile(filepath.Join(p.dir, "last"), []byte(a.String()), 0o600)
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("no free address in %s", p.prefix)
}

// usable excludes the network, gateway and broadcast addresses.
func (p *ipam) usable(a netip.Addr) bool {
	if a == p.prefix.Masked().Addr() || a == p.gateway() {
		return false
	}
	if a.Is4() {
		b := a.As4()
		bits := p.prefix.Bits()
		host := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		mask := uint32(1)<<(32-bits) - 1
		if host&mask == mask {
			return false
		}
	}
	return true
}

// find returns the address owner holds.
func (p *ipam) find(owner string) (netip.Addr, bool, error) {
	entries, err := os.ReadDir(p.dir)
	if errors.Is(err, os.ErrNotExist) {
		return netip.Addr{}, false, nil
	}
	if err != nil {
		return netip.Addr{}, false, err
	}
	for _, e := range entries {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.dir, e.Name()))
		if err == nil && string(b) == owner {
			return a, true, nil
		}
	}
	return netip.Addr{}, false, nil
}

// release frees every address owner holds.
func (p *ipam) release(owner string) error {
	for {
		a, ok, err := p.find(owner)
		if err != nil || !ok {
			return err
		}
		if err := os.Remove(filepath.Join(p.dir, a.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
}

// allocated lists address → owner.
func (p *ipam) allocated() (map[netip.Addr]string, error) {
	out := map[netip.Addr]string{}
	entries, err := os.ReadDir(p.dir)
	if errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		a, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(p.dir, e.Name())); err == nil {
			out[a] = string(b)
		}
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err
}
