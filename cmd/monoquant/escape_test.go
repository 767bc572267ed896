package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestNamesNeverReachTheTerminalRaw: tensor names and metadata carrying terminal escapes,
// C1 controls and bidi overrides are escaped in human output (inspect, quantize's report,
// compare) and in error messages, while --json keeps them exact.
func TestNamesNeverReachTheTerminalRaw(t *testing.T) {
	dir := t.TempDir()
	evil := "fc\x1b[2J\x1b]0;owned\x07\u009b31m\u202e.weight"
	in := filepath.Join(dir, "evil.safetensors")
	writeSafetensorsMeta(t, in, map[string]string{"note\x1b[5m": "v\r\x1b[1A"}, evil, tf(ramp(64, 0.1), 8, 8))
	raw := func(s string) bool {
		return strings.ContainsAny(s, "\x1b\x07\r\u009b\u202e")
	}
	for _, args := range [][]string{
		{"inspect", in},
		{"quantize", "--model", in, "--out", filepath.Join(dir, "q.safetensors"), "--quiet"},
		{"compare", in, in},
	} {
		r := runCLI(t, args...)
		if raw(r.stdout) || raw(r.stderr) {
			t.Errorf("%v printed raw control characters:\n%q\n%q", args, r.stdout, r.stderr)
		}
		if r.code == 0 && !strings.Contains(r.stdout, `fc\x1b[2J`) && args[0] != "quantize" {
			t.Errorf("%v: the escaped name is missing from the output:\n%s", args, r.stdout)
		}
	}
	r := runCLI(t, "inspect", "--json", in)
	var res struct {
		Tensors []struct {
			Name string `json:"name"`
		} `json:"tensors"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res.Tensors) != 1 || res.Tensors[0].Name != evil {
		t.Errorf("inspect --json did not keep the name exact: %v %q", err, r.stdout)
	}
}
