package shipper

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// masterDest delivers to one master's /logs/v1/ingest over the node's TLS
// credentials.
type masterDest struct {
	name string
	addr string
	rt   http.RoundTripper
	zw   *gzip.Writer // reused: a new one allocates ~1 MiB
}

func (d *masterDest) Name() string { return d.name }

func (d *masterDest) Send(ctx context.Context, payloads [][]byte) error {
	if d.zw == nil {
		d.zw, _ = gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	}
	body, err := gzipLines(d.zw, payloads)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+d.addr+"/logs/v1/ingest", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Content-Encoding", "gzip")
	req.Header.Set("User-Agent", "skiff-log-shipper")
	rt := d.rt
	if rt == nil {
		rt = http.DefaultTransport
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusRequestEntityTooLarge && len(payloads) > 1:
		half := len(payloads) / 2
		if err := d.Send(ctx, payloads[:half]); err != nil {
			return err
		}
		return d.Send(ctx, payloads[half:])
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusRequestEntityTooLarge:
		return &PermanentError{Err: fmt.Errorf("%s: %s: %s", d.addr, resp.Status, bytes.TrimSpace(msg))}
	default:
		return fmt.Errorf("%s: %s: %s", d.addr, resp.Status, bytes.TrimSpace(msg))
	}
}

// gzipLines is the NDJSON body of payloads, gzipped with zw.
func gzipLines(zw *gzip.Writer, payloads [][]byte) ([]byte, error) {
	var buf bytes.Buffer
	zw.Reset(&buf)
	for _, p := range payloads {
		if _, err := zw.Write(p); err != nil {
			return nil, err
		}
		if _, err := zw.Write([]byte{'\n'}); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
