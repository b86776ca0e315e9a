package pki

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Base names of the key pairs kept in a master's TLS directory:
// <dir>/ca.crt, <dir>/ca.key, <dir>/server.crt, <dir>/server.key.
const (
	CABaseName     = "ca"
	ServerBaseName = "server"
)

const (
	certFileMode = 0o644
	keyFileMode  = 0o600
	dirMode      = 0o700
)

// WriteFileAtomic replaces path with data: it writes a temporary file in the
// same directory, syncs it, renames it over path and syncs the directory, so
// readers see either the old or the new content, never a partial file. The
// file gets exactly mode (the umask does not apply).
func WriteFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			// The temp file is ours and incomplete; its removal error adds
			// nothing to the error already returned.
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return fmt.Errorf("sync directory: %w", serr)
	}
	if cerr != nil {
		return fmt.Errorf("close directory: %w", cerr)
	}
	return nil
}

// WriteKeyPair writes <dir>/<base>.crt (0644) and <dir>/<base>.key (0600)
// atomically, creating dir (0700) if needed. The key is written first so
// that a crash never leaves a new certificate beside an old key.
func WriteKeyPair(dir, base string, certPEM, keyPEM []byte) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return fmt.Errorf("write key pair %s: %w", base, err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, base+".key"), keyPEM, keyFileMode); err != nil {
		return fmt.Errorf("write key pair %s: %w", base, err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, base+".crt"), certPEM, certFileMode); err != nil {
		return fmt.Errorf("write key pair %s: %w", base, err)
	}
	return nil
}

// ReadKeyPair reads <dir>/<base>.crt and <dir>/<base>.key and checks that
// they form a valid pair. A missing file gives an error wrapping
// fs.ErrNotExist, so callers can tell "not created yet" from "broken".
func ReadKeyPair(dir, base string) (certPEM, keyPEM []byte, err error) {
	certPEM, err = os.ReadFile(filepath.Join(dir, base+".crt"))
	if err != nil {
		return nil, nil, fmt.Errorf("read key pair %s: %w", base, err)
	}
	keyPEM, err = os.ReadFile(filepath.Join(dir, base+".key"))
	if err != nil {
		return nil, nil, fmt.Errorf("read key pair %s: %w", base, err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, nil, fmt.Errorf("read key pair %s: %w", base, err)
	}
	return certPEM, keyPEM, nil
}

// WriteFiles writes the CA as <dir>/ca.crt and <dir>/ca.key.
func (ca *CA) WriteFiles(dir string) error {
	if len(ca.CertPEM) == 0 || len(ca.KeyPEM) == 0 {
		return errors.New("write CA: no PEM data")
	}
	return WriteKeyPair(dir, CABaseName, ca.CertPEM, ca.KeyPEM)
}

// ReadCAFiles loads the CA from <dir>/ca.crt and <dir>/ca.key. A missing
// file gives an error wrapping fs.ErrNotExist.
func ReadCAFiles(dir string) (*CA, error) {
	certPEM, keyPEM, err := ReadKeyPair(dir, CABaseName)
	if err != nil {
		return nil, err
	}
	return LoadCA(certPEM, keyPEM)
}
