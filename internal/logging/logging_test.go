package logging

import (
	"testing"

	"go.uber.org/zap/zapcore"
)

func TestNewLevels(t *testing.T) {
	for _, tc := range []struct {
		level   string
		enabled zapcore.Level
		below   zapcore.Level
	}{
		{"debug", zapcore.DebugLevel, zapcore.DebugLevel - 1},
		{"info", zapcore.InfoLevel, zapcore.DebugLevel},
		{"warn", zapcore.WarnLevel, zapcore.InfoLevel},
		{"error", zapcore.ErrorLevel, zapcore.WarnLevel},
	} {
		log, err := New(tc.level)
		if err != nil {
			t.Fatalf("New(%q): %v", tc.level, err)
		}
		if !log.Core().Enabled(tc.enabled) || log.Core().Enabled(tc.below) {
			t.Errorf("New(%q): enabled at %v %v, below %v %v", tc.level,
				tc.enabled, log.Core().Enabled(tc.enabled), tc.below, log.Core().Enabled(tc.below))
		}
	}
	if _, err := New("loud"); err == nil {
		t.Error(`New("loud") accepted an unknown level`)
	}
}
