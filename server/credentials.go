package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/skiff-io/skiff/server/auth"
	"github.com/skiff-io/skiff/server/pki"
)

// loadOrCreateCredentials makes sure the data dir holds the cluster CA, the
// join token and this master's certificate:
//   - a data dir that has them resumes with them;
//   - a master with --join fetches the CA from the cluster (after checking
//     it against the token's hash);
//   - otherwise a new CA and token are made (bootstrap).
func (s *Server) loadOrCreateCredentials(ctx context.Context) error {
	dir := s.cfg.tlsDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caCrt, caKey := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	var saKey []byte   // the service-account signing key, when received or made here
	var rootKey []byte // the encryption-at-rest root key, when received
	newCluster := false
	certPEM, errC := os.ReadFile(caCrt)
	keyPEM, errK := os.ReadFile(caKey)
	switch {
	case errC == nil && errK == nil:
		tok, err := os.ReadFile(s.cfg.tokenPath())
		if err != nil {
			return fmt.Errorf("data dir has a CA but no token: %w", err)
		}
		s.token = strings.TrimSpace(string(tok))
	case !errors.Is(errC, os.ErrNotExist):
		return fmt.Errorf("read %s: %w", caCrt, errC)
	case s.cfg.Join != "":
		if s.cfg.Token == "" {
			return errors.New("--join needs --token or --token-file")
		}
		br, err := fetchBootstrap(ctx, s.cfg.Join, s.cfg.Token)
		if err != nil {
			return err
		}
		certPEM, keyPEM, s.token = []byte(br.CACert), []byte(br.CAKey), br.Token
		saKey = []byte(br.ServiceAccountKey)
		rootKey = br.EncryptionKey
	default:
		ca, err := pki.GenerateCA("skiff-ca")
		if err != nil {
			return err
		}
		certPEM, keyPEM = ca.CertPEM, ca.KeyPEM
		newCluster = true
		if saKey, err = pki.GenerateServiceAccountKey(); err != nil {
			return err
		}
		secret := ""
		if s.cfg.Token != "" {
			hash, sec, err := pki.ParseToken(s.cfg.Token)
			if err != nil {
				return fmt.Errorf("--token: %w", err)
			}
			if hash != "" {
				return errors.New("--token carries a CA hash, but this is a new cluster: give a bare secret, or --join the cluster the token belongs to")
			}
			if pki.IsAgentSecret(sec) {
				return errors.New("--token has the form of an agent token (<id>.<secret>): the server token must not, choose another secret")
			}
			secret = sec
		} else if secret, err = pki.GenerateSecret(); err != nil {
			return err
		}
		s.token = pki.FormatToken(certPEM, secret)
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("cluster CA: %w", err)
	}
	s.ca = ca
	if err := pki.WriteFileAtomic(caCrt, certPEM, 0o644); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(caKey, keyPEM, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(s.cfg.tokenPath(), []byte(s.token+"\n"), 0o600); err != nil {
		return err
	}
	_, secret, err := pki.ParseToken(s.token)
	if err != nil {
		return fmt.Errorf("stored token: %w", err)
	}
	s.secret = secret
	if err := s.prepareAgentToken(); err != nil {
		return err
	}
	if err := s.loadServiceAccountKey(saKey); err != nil {
		return err
	}
	if err := s.loadEncryptionRootKey(rootKey, newCluster); err != nil {
		return err
	}

	// This master's certificate is reissued at every start so that its
	// names follow the current advertise address.
	ips := []net.IP{net.ParseIP(s.cfg.AdvertiseAddress)}
	if bip := net.ParseIP(s.cfg.BindAddress); bip != nil && !bip.IsUnspecified() {
		ips = append(ips, bip)
	}
	// Pods reach the API at the kubernetes Service's cluster IP.
	if alloc, err := s.serviceAllocator(); err == nil {
		ips = append(ips, net.IP(alloc.FirstIP().AsSlice()))
	}
	// IssueServer sorts the extra names: addresses go to the IP SANs.
	s.serverCert, s.serverKey, err = ca.IssueServer(s.cfg.NodeName, append([]string{s.cfg.NodeName}, s.cfg.TLSSANs...), ips)
	if err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, "server.crt"), s.serverCert, 0o644); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, "server.key"), s.serverKey, 0o600); err != nil {
		return err
	}

	// Cluster-admin credentials for kubectl, pointing at this master.
	adminCert, adminKey, err := ca.IssueClient("skiff-admin", []string{auth.GroupMasters})
	if err != nil {
		return err
	}
	return pki.WriteKubeconfig(s.cfg.kubeconfigPath(), s.cfg.apiURL(), ca.CertPEM, adminCert, adminKey)
}
