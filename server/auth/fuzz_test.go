package auth

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/server/pki"
)

// The cluster the bearer-token fuzzer authenticates against: a join token,
// one bootstrap token (validBootstrapToken, with an extra group) and a
// service account app/robot with a bound token (for pod app/p) and a
// legacy one (in Secret app/robot-token).
const (
	fuzzJoinSecret = "0123456789abcdef0123456789abcdef"
	fuzzExtraGroup = "system:bootstrappers:worker"
	fuzzSAUser     = ServiceAccountUserPrefix + "app:robot"
)

var fuzzCAHash = pki.CAHash([]byte("fuzz-ca"))

type fuzzCluster struct {
	a                    *Authenticator
	bound, legacy, stale string
}

func newFuzzCluster(tb testing.TB) *fuzzCluster {
	tb.Helper()
	keyPEM, err := pki.GenerateServiceAccountKey()
	if err != nil {
		tb.Fatal(err)
	}
	key, err := pki.ParseServiceAccountKey(keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	tokens, err := NewServiceAccountTokens(key, TokenConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	c := &fuzzCluster{}
	spec := TokenSpec{Namespace: "app", ServiceAccount: "robot", ServiceAccountUID: "sa-uid", Pod: &ObjectRef{Name: "p", UID: "pod-uid"}}
	if c.bound, _, err = tokens.Issue(spec, testNow.Add(-time.Minute)); err != nil {
		tb.Fatal(err)
	}
	if c.stale, _, err = tokens.Issue(spec, testNow.Add(-2*DefaultTokenExpiration)); err != nil {
		tb.Fatal(err)
	}
	if c.legacy, err = tokens.IssueLegacy("app", "robot", "sa-uid", "robot-token"); err != nil {
		tb.Fatal(err)
	}
	objects := newFakeSAObjects()
	objects.sas["app/robot"] = &corev1.ServiceAccount{ObjectMeta: meta("app", "robot", "sa-uid")}
	objects.pods["app/p"] = &corev1.Pod{ObjectMeta: meta("app", "p", "pod-uid")}
	objects.secrets["app/robot-token"] = &corev1.Secret{ObjectMeta: meta("app", "robot-token", "sec-uid"),
		Type: corev1.SecretTypeServiceAccountToken, Data: map[string][]byte{corev1.ServiceAccountTokenKey: []byte(c.legacy)}}
	c.a = NewAuthenticator(AuthenticatorConfig{
		JoinSecret: "K10" + fuzzCAHash + "::server:" + fuzzJoinSecret,
		Secrets: bootstrapSecret(func(s *corev1.Secret) {
			s.Data[bootstrapTokenKeyGroups] = []byte(fuzzExtraGroup)
		}),
		ServiceAccountTokens: tokens,
		Objects:              objects,
		Now:                  func() time.Time { return testNow },
		Logger:               slog.New(slog.DiscardHandler),
	})
	return c
}

// FuzzAuthenticate: any Authorization header is answered with a user or
// ErrUnauthenticated, never anything else; and the only users it can
// yield are the ones the cluster's credentials name, each only for its
// own credential: nothing an attacker sends makes another identity, a
// group beyond the credential's, or system:masters.
func FuzzAuthenticate(f *testing.F) {
	c := newFuzzCluster(f)
	for _, h := range []string{
		"Bearer K10" + fuzzCAHash + "::server:" + fuzzJoinSecret,
		"bearer " + fuzzJoinSecret,
		"Bearer K10" + strings.ToUpper(fuzzCAHash) + "::server:" + fuzzJoinSecret,
		"Bearer K10" + pki.CAHash([]byte("other")) + "::server:" + fuzzJoinSecret,
		"Bearer " + validBootstrapToken,
		"Bearer  " + validBootstrapToken + " ",
		"Bearer abcdef.0123456789abcdeg",
		"Bearer " + c.bound,
		"Bearer " + c.legacy,
		"Bearer " + c.stale,
		"Bearer " + c.bound[:len(c.bound)-2],
		"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
		"Basic c2VjcmV0",
		"Bearer",
		"",
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := newRequest(t, "")
		r.Header.Set("Authorization", header)
		u, err := c.a.Authenticate(r)
		if err != nil {
			if u != nil || !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("Authenticate(%q) = %+v, %v; want a user or ErrUnauthenticated", header, u, err)
			}
			return
		}
		if u == nil {
			t.Fatalf("Authenticate(%q): no user and no error", header)
		}
		_, tok, _ := strings.Cut(header, " ")
		tok = strings.TrimSpace(tok)
		var want []string
		switch u.Name {
		case UserAnonymous:
			if header != "" {
				t.Fatalf("Authenticate(%q): anonymous for a header", header)
			}
			want = []string{GroupUnauthenticated}
		case UserJoiner:
			hash, secret, err := pki.ParseToken(tok)
			if err != nil || secret != fuzzJoinSecret || (hash != "" && hash != fuzzCAHash) {
				t.Fatalf("Authenticate(%q): joiner for another token", header)
			}
			want = []string{GroupBootstrappers, GroupAuthenticated}
		case BootstrapUserPrefix + "abcdef":
			if tok != validBootstrapToken {
				t.Fatalf("Authenticate(%q): bootstrap user for another token", header)
			}
			want = []string{GroupBootstrappers, fuzzExtraGroup, GroupAuthenticated}
		case fuzzSAUser:
			if !LooksLikeJWT(tok) || u.UID != "sa-uid" {
				t.Fatalf("Authenticate(%q): service account %+v", header, u)
			}
			want = []string{GroupServiceAccounts, GroupServiceAccounts + ":app", GroupAuthenticated}
		default:
			t.Fatalf("Authenticate(%q): user %q, whom no credential names", header, u.Name)
		}
		if !slices.Equal(u.Groups, want) {
			t.Fatalf("Authenticate(%q): %s in groups %q, want %q", header, u.Name, u.Groups, want)
		}
	})
}
