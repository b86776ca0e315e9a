package snapshot

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func write(t *testing.T, secret string, state []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	err := Write(&buf, Header{Name: "s1", Cluster: "abc", Index: 42}, secret, Keys{CACert: "ca", Token: "tok"},
		func(w io.Writer) error { _, err := w.Write(state); return err })
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(file []byte, secret string) (Header, *Keys, []byte, error) {
	hdr, keys, r, err := Open(bytes.NewReader(file), secret)
	if err != nil {
		return hdr, nil, nil, err
	}
	b, err := io.ReadAll(r)
	return hdr, keys, b, err
}

// TestRoundTrip: several chunks of state come back whole, with the header
// and keys; the state's bytes are not in the file.
func TestRoundTrip(t *testing.T) {
	state := bytes.Repeat([]byte("plain-marker-"), 3*ChunkSize/13+7)
	file := write(t, "secret", state)
	if bytes.Contains(file, []byte("plain-marker-")) || bytes.Contains(file, []byte(`"tok"`)) {
		t.Fatalf("the file holds plain state or keys")
	}
	hdr, keys, got, err := readAll(file, "secret")
	if err != nil {
		t.Fatal(err)
	}
	if hdr.Index != 42 || hdr.Name != "s1" || keys.Token != "tok" || !bytes.Equal(got, state) {
		t.Fatalf("round trip: header %+v keys %+v, %d of %d state bytes", hdr, keys, len(got), len(state))
	}
	// An empty state, too (the last chunk holds the keys only).
	if _, _, got, err := readAll(write(t, "secret", nil), "secret"); err != nil || len(got) != 0 {
		t.Fatalf("empty state: %q %v", got, err)
	}
}

// TestRefused: another token, a flipped byte, a cut, a dropped or repeated
// chunk and trailing data are all refused.
func TestRefused(t *testing.T) {
	state := bytes.Repeat([]byte("x"), 2*ChunkSize+100)
	file := write(t, "secret", state)
	if _, _, _, err := readAll(file, "other"); !errors.Is(err, ErrBadKey) {
		t.Fatalf("another token: %v, want ErrBadKey", err)
	}
	hdrEnd := bytes.IndexByte(file, '\n') + 1
	chunk := 4 + ChunkSize + 16
	cases := map[string][]byte{
		"flipped byte":     flip(file, hdrEnd+100),
		"header changed":   []byte(strings.Replace(string(file), `"index":42`, `"index":43`, 1)),
		"cut short":        file[:len(file)-10],
		"last chunk gone":  file[:hdrEnd+2*chunk],
		"chunk dropped":    append(append([]byte{}, file[:hdrEnd]...), file[hdrEnd+chunk:]...),
		"chunk repeated":   append(append(append([]byte{}, file[:hdrEnd+chunk]...), file[hdrEnd:hdrEnd+chunk]...), file[hdrEnd+chunk:]...),
		"data after":       append(append([]byte{}, file...), 'x'),
		"not a snapshot":   []byte("hello\n"),
		"no header at all": nil,
	}
	for name, bad := range cases {
		if _, _, got, err := readAll(bad, "secret"); err == nil {
			t.Errorf("%s: read %d bytes without error", name, len(got))
		}
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte{}, b...)
	out[i] ^= 1
	return out
}
