package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/skiff-io/skiff/client"
)

// adminRequest sends one request to a master named by the admin
// kubeconfig (a path, or "" for the default) and decodes its JSON answer
// into out, unless out is nil. what names the answer in a decoding error.
func adminRequest(kubeconfig, method, path string, timeout time.Duration, what string, out any) error {
	m, err := client.NewMaster(client.KubeconfigPath(kubeconfig))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	body, err := m.Do(ctx, method, path)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}
