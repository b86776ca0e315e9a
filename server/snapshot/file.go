// Package snapshot is the format of Skiff's cluster snapshot files (`skiff
// cluster snapshot`, scheduled snapshots): a point-in-time state of the
// cluster with its Raft index and the cluster's keys, so that a fresh
// master restores it (`skiff server --cluster-reset --cluster-reset-restore
// FILE`), as k3s restores its etcd snapshots with the server token.
//
// A file is one JSON header line, then the body sealed with AES-256-GCM in
// chunks:
//
//	{"format":"skiff-snapshot","version":1,"name":...,"cluster":<CA hash>,"index":I,...,"salt":...,"nonce":...}
//	repeated: uint32 length (big-endian) | sealed chunk (at most ChunkSize plain bytes)
//
// The key is HKDF-SHA256 of the server token's secret with the header's
// salt: whoever holds the server token (who may fetch the cluster's keys
// from any master anyway) can open it, nobody else. Chunk i's nonce is the
// header's 8-byte nonce prefix and i (uint32); its additional data is the
// header line and a byte that is 1 on the last chunk only, so chunks
// cannot be reordered, dropped, cut off or moved to another file. The
// plain body is a JSON line of Keys, then the FSM's snapshot stream.
package snapshot

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

const (
	// Format and Version open every header.
	Format  = "skiff-snapshot"
	Version = 1
	// ChunkSize is the most plain bytes one sealed chunk holds.
	ChunkSize = 64 << 10
	keyInfo   = "skiff snapshot file v1"
	// maxHeader bounds the header line.
	maxHeader = 64 << 10
)

// ErrBadKey: the file does not open with the token given (another
// cluster's file, or another token), or it was damaged.
var ErrBadKey = errors.New("snapshot does not open with this server token (another cluster's, or damaged)")

// Header describes a snapshot; it is readable without the token.
type Header struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Cluster is the hash of the cluster CA (as in tokens: K10<hash>).
	Cluster string    `json:"cluster"`
	Index   uint64    `json:"index"`
	Created time.Time `json:"created"`
	// Master took it; Scheduled says whether the schedule did.
	Master    string `json:"master"`
	Scheduled bool   `json:"scheduled,omitempty"`
	Objects   int    `json:"objects"`
	Salt      []byte `json:"salt"`
	Nonce     []byte `json:"nonce"`
}

// Keys are the cluster's keys, carried so that a fresh master can take the
// cluster over (PEM, as in the data dir).
type Keys struct {
	CACert            string `json:"caCert"`
	CAKey             string `json:"caKey"`
	ServiceAccountKey string `json:"serviceAccountKey"`
	EncryptionKey     []byte `json:"encryptionKey"`
	Token             string `json:"token"`
}

func aead(secret string, salt []byte) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, []byte(secret), salt, keyInfo, 32)
	if err != nil {
		return nil, err
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Write writes a snapshot: hdr (its salt and nonce are drawn here), keys,
// then what state writes (the FSM's snapshot stream).
func Write(w io.Writer, hdr Header, secret string, keys Keys, state func(io.Writer) error) error {
	hdr.Format, hdr.Version = Format, Version
	hdr.Salt, hdr.Nonce = make([]byte, 16), make([]byte, 8)
	_, _ = rand.Read(hdr.Salt) // crypto/rand.Read never fails
	_, _ = rand.Read(hdr.Nonce)
	line, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if _, err := w.Write(line); err != nil {
		return err
	}
	a, err := aead(secret, hdr.Salt)
	if err != nil {
		return err
	}
	cw := &chunkWriter{w: w, aead: a, hdr: line, nonce: hdr.Nonce, buf: make([]byte, 0, ChunkSize)}
	kb, err := json.Marshal(keys)
	if err != nil {
		return err
	}
	if _, err := cw.Write(append(kb, '\n')); err != nil {
		return err
	}
	if err := state(cw); err != nil {
		return err
	}
	return cw.close()
}

type chunkWriter struct {
	w     io.Writer
	aead  cipher.AEAD
	hdr   []byte
	nonce []byte
	n     uint32
	buf   []byte
	err   error
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	total := len(p)
	for len(p) > 0 {
		if len(c.buf) == ChunkSize {
			if err := c.flush(false); err != nil {
				return 0, err
			}
		}
		k := min(ChunkSize-len(c.buf), len(p))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
	}
	return total, nil
}

func (c *chunkWriter) flush(last bool) error {
	nonce := binary.BigEndian.AppendUint32(bytes.Clone(c.nonce), c.n)
	c.n++
	out := c.aead.Seal(make([]byte, 4, 4+len(c.buf)+c.aead.Overhead()), nonce, c.buf, additional(c.hdr, last))
	binary.BigEndian.PutUint32(out, uint32(len(out)-4))
	if _, err := c.w.Write(out); err != nil {
		c.err = err
		return err
	}
	c.buf = c.buf[:0]
	return nil
}

// close seals what is left as the last chunk (possibly empty).
func (c *chunkWriter) close() error {
	if c.err != nil {
		return c.err
	}
	return c.flush(true)
}

func additional(hdr []byte, last bool) []byte {
	ad := make([]byte, 0, len(hdr)+1)
	ad = append(ad, hdr...)
	if last {
		return append(ad, 1)
	}
	return append(ad, 0)
}

// ReadHeader reads the header line of a snapshot file.
func ReadHeader(br *bufio.Reader) (Header, []byte, error) {
	var hdr Header
	line, err := br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxHeader {
		return hdr, nil, errors.New("not a Skiff snapshot: no header line")
	}
	if err != nil {
		return hdr, nil, fmt.Errorf("not a Skiff snapshot: %w", err)
	}
	line = bytes.Clone(line)
	if err := json.Unmarshal(line, &hdr); err != nil || hdr.Format != Format {
		return hdr, nil, errors.New("not a Skiff snapshot: bad header")
	}
	if hdr.Version != Version {
		return hdr, nil, fmt.Errorf("snapshot format version %d: this skiff reads version %d", hdr.Version, Version)
	}
	if len(hdr.Salt) != 16 || len(hdr.Nonce) != 8 {
		return hdr, nil, errors.New("not a Skiff snapshot: bad salt or nonce")
	}
	return hdr, line, nil
}

// Open reads a snapshot with the server token's secret: its header, its
// keys, and a reader of the FSM stream (which fails with ErrBadKey if a
// later chunk does not open, and with io.ErrUnexpectedEOF if the file is
// cut short).
func Open(r io.Reader, secret string) (Header, *Keys, io.Reader, error) {
	br := bufio.NewReaderSize(r, maxHeader)
	hdr, line, err := ReadHeader(br)
	if err != nil {
		return hdr, nil, nil, err
	}
	a, err := aead(secret, hdr.Salt)
	if err != nil {
		return hdr, nil, nil, err
	}
	cr := bufio.NewReaderSize(&chunkReader{r: br, aead: a, hdr: line, nonce: hdr.Nonce}, 1<<20)
	kl, err := cr.ReadSlice('\n')
	if err != nil {
		return hdr, nil, nil, fmt.Errorf("snapshot keys: %w", err)
	}
	var keys Keys
	if err := json.Unmarshal(kl, &keys); err != nil {
		return hdr, nil, nil, fmt.Errorf("snapshot keys: %w", err)
	}
	return hdr, &keys, cr, nil
}

type chunkReader struct {
	r     io.Reader
	aead  cipher.AEAD
	hdr   []byte
	nonce []byte
	n     uint32
	plain []byte
	done  bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.plain) == 0 {
		if c.done {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	k := copy(p, c.plain)
	c.plain = c.plain[k:]
	return k, nil
}

func (c *chunkReader) next() error {
	var lb [4]byte
	if _, err := io.ReadFull(c.r, lb[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF // no last chunk: cut short
		}
		return err
	}
	n := binary.BigEndian.Uint32(lb[:])
	if n > ChunkSize+uint32(c.aead.Overhead()) {
		return fmt.Errorf("snapshot chunk %d of %d bytes: %w", c.n, n, ErrBadKey)
	}
	sealed := make([]byte, n)
	if _, err := io.ReadFull(c.r, sealed); err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	nonce := binary.BigEndian.AppendUint32(bytes.Clone(c.nonce), c.n)
	c.n++
	for _, last := range []bool{false, true} {
		plain, err := c.aead.Open(nil, nonce, sealed, additional(c.hdr, last))
		if err == nil {
			c.plain, c.done = plain, last
			if last {
				// Nothing may follow the last chunk.
				var b [1]byte
				if k, _ := c.r.Read(b[:]); k > 0 {
					return errors.New("data after the last snapshot chunk")
				}
			}
			return nil
		}
	}
	return fmt.Errorf("snapshot chunk %d: %w", c.n-1, ErrBadKey)
}
