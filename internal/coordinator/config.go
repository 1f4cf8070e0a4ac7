package coordinator

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"sigs.k8s.io/yaml"
)

// FileConfig is the coordinator's configuration file (YAML). Command-line flags override
// it; `coordinator config default` prints it with the defaults.
type FileConfig struct {
	// Listen is the gRPC address; HTTPListen serves /metrics and the dashboard ("" : off).
	Listen     string `json:"listen"`
	HTTPListen string `json:"http_listen"`
	DB         string `json:"db"`
	LogLevel   string `json:"log_level"`

	LeaseTTL     Duration `json:"lease_ttl"`
	Heartbeat    Duration `json:"heartbeat"`
	RestartGrace Duration `json:"restart_grace"`
	MaxAttempts  int32    `json:"max_attempts"`
	StopTimeout  Duration `json:"stop_timeout"`
	DBTimeout    Duration `json:"db_timeout"`

	// Security: bearer tokens with roles, TLS (mutual when tls_client_ca is set).
	TokensFile  string `json:"tokens_file"`
	TLSCert     string `json:"tls_cert"`
	TLSKey      string `json:"tls_key"`
	TLSClientCA string `json:"tls_client_ca"`

	MaxMessageBytes int     `json:"max_message_bytes"`
	RegisterRate    float64 `json:"register_rate"`
	RegisterBurst   int     `json:"register_burst"`
}

// DefaultFileConfig is the configuration a coordinator runs with when given none.
func DefaultFileConfig() FileConfig {
	return FileConfig{
		Listen:          "127.0.0.1:7070",
		HTTPListen:      "127.0.0.1:7071",
		DB:              "mixopt.db",
		LogLevel:        "info",
		LeaseTTL:        Duration(30 * time.Second),
		Heartbeat:       0, // lease_ttl / 6
		RestartGrace:    Duration(30 * time.Second),
		MaxAttempts:     3,
		StopTimeout:     Duration(10 * time.Second),
		DBTimeout:       Duration(time.Second),
		MaxMessageBytes: 16 << 20,
		RegisterRate:    20,
		RegisterBurst:   200,
	}
}

// LoadFileConfig reads a YAML (or JSON) configuration over the defaults; an unknown key
// is an error naming it.
func LoadFileConfig(path string) (FileConfig, error) {
	cfg := DefaultFileConfig()
	raw, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	if err := yaml.UnmarshalStrict(raw, &cfg); err != nil {
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// YAML renders the configuration as a commented-free YAML document.
func (c FileConfig) YAML() ([]byte, error) { return yaml.Marshal(c) }

// Duration is a time.Duration written as "30s" in configuration files.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}
