package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// DataModel is the paper's surrogate of pre-training runs: a small ReLU MLP mapping
// (mixture, model size in millions, step) to metrics. Its JSON format is described in the
// benchmark data's README.
type DataModel struct {
	Name    string           `json:"name"`
	Domains []string         `json:"domains"`
	Scales  []DataModelScale `json:"scales"`
	Steps   struct {
		Min     int64 `json:"min"`
		Max     int64 `json:"max"`
		Every   int64 `json:"every"`
		FullRun int64 `json:"full_run"`
	} `json:"steps"`
	XMean   []float64        `json:"x_mean"`
	XStd    []float64        `json:"x_std"`
	YMean   []float64        `json:"y_mean"`
	YStd    []float64        `json:"y_std"`
	Outputs []string         `json:"outputs"`
	Layers  []dataModelLayer `json:"layers"`

	ReferenceEvaluations []struct {
		Mixture []float64 `json:"mixture"`
		SizeM   float64   `json:"size_m"`
		Step    float64   `json:"step"`
		Outputs []float64 `json:"outputs"`
	} `json:"reference_evaluations"`
}

// DataModelScale is one model scale the data model was fitted on.
type DataModelScale struct {
	Name          string  `json:"name"`
	SizeM         float64 `json:"size_m"`
	DModel        int     `json:"d_model"`
	NLayers       int     `json:"n_layers"`
	NHeads        int     `json:"n_heads"`
	GFlopsPerStep float64 `json:"gflops_per_step"`
}

type dataModelLayer struct {
	Weight [][]float64 `json:"weight"`
	Bias   []float64   `json:"bias"`
}

// LoadDataModel reads and checks a data model file.
func LoadDataModel(path string) (*DataModel, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read data model: %w", err)
	}
	var m DataModel
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("parse data model %s: %w", path, err)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("data model %s: %w", path, err)
	}
	return &m, nil
}

func (m *DataModel) validate() error {
	in := len(m.Domains) + 2
	if len(m.XMean) != in || len(m.XStd) != in {
		return fmt.Errorf("x_mean and x_std need %d entries", in)
	}
	for i := range m.XStd {
		if m.XStd[i] == 0 || math.IsNaN(m.XStd[i]) {
			return fmt.Errorf("x_std[%d] is %g, want non-zero", i, m.XStd[i])
		}
	}
	if len(m.Layers) == 0 {
		return fmt.Errorf("no layers")
	}
	width := in
	for i, l := range m.Layers {
		if len(l.Weight) == 0 || len(l.Bias) != len(l.Weight) {
			return fmt.Errorf("layer %d: weight rows and bias differ", i)
		}
		for _, row := range l.Weight {
			if len(row) != width {
				return fmt.Errorf("layer %d: row has %d inputs, want %d", i, len(row), width)
			}
		}
		width = len(l.Weight)
	}
	if width != len(m.Outputs) || len(m.YMean) != width || len(m.YStd) != width {
		return fmt.Errorf("last layer has %d outputs, names %d, y stats %d/%d", width, len(m.Outputs), len(m.YMean), len(m.YStd))
	}
	return nil
}

// Eval returns every output at (mixture, size in millions, step). The mixture must have
// one weight per domain; Eval does not check it because it sits in the optimizer's
// inner loop (sources check requests before calling it).
func (m *DataModel) Eval(mixture []float64, sizeM, step float64) []float64 {
	width := len(m.XMean)
	for _, l := range m.Layers {
		width = max(width, len(l.Weight))
	}
	// Two buffers, swapped per layer, instead of a fresh slice for each layer.
	buf := make([]float64, 2*width)
	h, next := buf[:width:width], buf[width:]
	n := copy(h, mixture)
	h[n], h[n+1] = sizeM, step
	h = h[:len(m.XMean)]
	for i := range h {
		h[i] = (h[i] - m.XMean[i]) / m.XStd[i]
	}
	last := len(m.Layers) - 1
	for li, l := range m.Layers {
		next = next[:len(l.Weight)]
		for r, row := range l.Weight {
			s := l.Bias[r]
			for c, w := range row {
				s += w * h[c]
			}
			if li < last {
				s = math.Max(s, 0)
			}
			next[r] = s
		}
		h, next = next, h[:cap(h)]
	}
	out := make([]float64, len(h))
	for i := range h {
		out[i] = h[i]*m.YStd[i] + m.YMean[i]
	}
	return out
}

// OutputIndex returns the position of a named output, or -1.
func (m *DataModel) OutputIndex(name string) int {
	for i, o := range m.Outputs {
		if o == name {
			return i
		}
	}
	return -1
}
