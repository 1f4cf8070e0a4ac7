package sim

import (
	"fmt"
	"strings"
)

// OpenOptions applies to the source Open returns.
type OpenOptions struct {
	// Noise is the standard deviation of Gaussian noise for model sources (synthetic, data
	// model). Recordings replay real runs, which carry their own noise, so they refuse it.
	Noise float64
}

// openForms lists the specs Open understands, for its error message.
const openForms = `"synthetic", "datamodel:PATH", "recording:PATH", or a path ending in .json (data model) or .jsonl (recording)`

// Open returns the source a spec names: "synthetic"; "datamodel:PATH" or a path ending in
// .json (a data model); "recording:PATH" or a path ending in .jsonl (a recording).
func Open(spec string, opts OpenOptions) (Source, error) {
	if !(opts.Noise >= 0) {
		return nil, fmt.Errorf("noise %g: want not negative", opts.Noise)
	}
	kind, path := "", ""
	switch {
	case spec == "synthetic":
		return NewSynthetic(SyntheticOptions{Noise: opts.Noise}), nil
	case strings.HasPrefix(spec, "datamodel:"):
		kind, path = "datamodel", strings.TrimPrefix(spec, "datamodel:")
	case strings.HasPrefix(spec, "recording:"):
		kind, path = "recording", strings.TrimPrefix(spec, "recording:")
	case strings.HasSuffix(spec, ".jsonl"):
		kind, path = "recording", spec
	case strings.HasSuffix(spec, ".json"):
		kind, path = "datamodel", spec
	default:
		return nil, fmt.Errorf("unknown simulator source %q: want %s", spec, openForms)
	}
	if path == "" {
		return nil, fmt.Errorf("simulator source %q names no file: want %s", spec, openForms)
	}
	if kind == "datamodel" {
		m, err := LoadDataModel(path)
		if err != nil {
			return nil, err
		}
		return NewDataModelSource(m, DataModelOptions(opts)), nil
	}
	if opts.Noise != 0 {
		return nil, fmt.Errorf("simulator source %q: noise applies to synthetic and data model sources, not to recordings", spec)
	}
	rec, err := LoadRecording(path)
	if err != nil {
		return nil, err // not rec: a nil *Recording would make a non-nil Source
	}
	return rec, nil
}
