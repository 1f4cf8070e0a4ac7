// Package buildinfo says which build of mixopt a binary is, for every binary's -version.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the module version and the source revision the binary was built from, as
// the Go toolchain stamped them ("(devel)" and no revision outside a checkout).
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build information) " + runtime.Version()
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += " " + rev + modified
	}
	return fmt.Sprintf("%s %s", v, runtime.Version())
}

// Line is what `-version` prints: the binary's name and its Version.
func Line(name string) string { return "mixopt " + name + " " + Version() }
