package coordinator

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFileConfigRoundTripAndErrors(t *testing.T) {
	dir := t.TempDir()
	def, err := DefaultFileConfig().YAML()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "default.yaml")
	os.WriteFile(p, def, 0o644)
	got, err := LoadFileConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if got != DefaultFileConfig() {
		t.Fatalf("default config does not round-trip:\n%s\n%+v", def, got)
	}

	p = filepath.Join(dir, "custom.yaml")
	os.WriteFile(p, []byte("listen: 0.0.0.0:9000\nlease_ttl: 45s\ntokens_file: /etc/mixopt/tokens\n"), 0o644)
	got, err = LoadFileConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.Listen != "0.0.0.0:9000" || time.Duration(got.LeaseTTL) != 45*time.Second ||
		got.TokensFile != "/etc/mixopt/tokens" || got.DB != "mixopt.db" {
		t.Fatalf("custom config: %+v", got)
	}

	for body, want := range map[string]string{
		"lease_tll: 3s\n":   "lease_tll",
		"lease_ttl: soon\n": "soon",
		"lease_ttl: 3\n":    "duration",
	} {
		os.WriteFile(p, []byte(body), 0o644)
		if _, err := LoadFileConfig(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: err %v, want it to name %q", body, err, want)
		}
	}
}
