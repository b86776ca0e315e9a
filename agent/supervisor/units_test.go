package supervisor

import (
	"strings"
	"testing"
)

func TestSystemdQuote(t *testing.T) {
	for in, want := range map[string]string{
		"--server":        "--server",
		"/srv/skiff data": `"/srv/skiff data"`,
		"100%":            "100%%",
		"$HOME":           "$$HOME",
		`a"b\c`:           `"a\"b\\c"`,
		"":                `""`,
	} {
		if got := systemdQuote(in); got != want {
			t.Errorf("systemdQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestShQuote(t *testing.T) {
	for in, want := range map[string]string{
		"--server":       "--server",
		"https://a:6443": "https://a:6443",
		"it's":           `'it'\''s'`,
		"a b":            "'a b'",
		"$(reboot)":      "'$(reboot)'",
	} {
		if got := shQuote(in); got != want {
			t.Errorf("shQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	u := Service{Role: "agent", Bin: "/usr/local/bin/skiff", Args: []string{"--server", "https://10.0.0.1:6443"}}.SystemdUnit()
	for _, want := range []string{"\nExecStart=/usr/local/bin/skiff agent --server https://10.0.0.1:6443\n", "\nType=notify\n", "\nWatchdogSec=60s\n", "\nKillMode=process\n"} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
}
