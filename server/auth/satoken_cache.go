package auth

import (
	"crypto/sha256"
	"sync"
	"time"
)

// verifiedCache remembers, for a short while, the claims of tokens whose
// signature and claims were verified, so that a client's requests do not
// each pay the signature check (as kube-apiserver's token cache). What the
// token is bound to is still looked up on every request.
type verifiedCache struct {
	mu      sync.Mutex
	ttl     time.Duration
	max     int
	entries map[[sha256.Size]byte]cachedClaims
}

type cachedClaims struct {
	claims *TokenClaims
	until  time.Time
}

const (
	verifiedCacheTTL  = 10 * time.Second
	verifiedCacheSize = 4096
)

func newVerifiedCache() *verifiedCache {
	return &verifiedCache{ttl: verifiedCacheTTL, max: verifiedCacheSize, entries: map[[sha256.Size]byte]cachedClaims{}}
}

func (c *verifiedCache) get(token string, now time.Time) (*TokenClaims, bool) {
	k := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return nil, false
	}
	if !now.Before(e.until) {
		delete(c.entries, k)
		return nil, false
	}
	return e.claims, true
}

// put keeps claims until the TTL passes or the token expires, whichever
// comes first. When full, an arbitrary entry makes room.
func (c *verifiedCache) put(token string, claims *TokenClaims, now time.Time) {
	until := now.Add(c.ttl)
	if !claims.Expiry.IsZero() && claims.Expiry.Before(until) {
		until = claims.Expiry
	}
	k := sha256.Sum256([]byte(token))
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for old := range c.entries {
			delete(c.entries, old)
			break
		}
	}
	c.entries[k] = cachedClaims{claims: claims, until: until}
}
