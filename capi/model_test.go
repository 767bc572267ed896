package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
)

// The same engine failure must get the same status from every model export, whatever the
// export's fallback; the fallback only covers errors without a sentinel.
func TestModelErrClassification(t *testing.T) {
	_, missing := os.Open(filepath.Join(t.TempDir(), "missing.safetensors"))
	_, openErr := checkpoint.Open(filepath.Join(t.TempDir(), "missing.pt"))
	tests := []struct {
		name     string
		err      error
		fallback int
		want     int
	}{
		{"nil", nil, mqEINVAL, mqOK},
		{"missing file", missing, mqEFORMAT, mqEIO},
		{"missing checkpoint via checkpoint.Open", openErr, mqEFORMAT, mqEIO},
		{"canceled", fmt.Errorf("quantize: %w", context.Canceled), mqEINVAL, mqECANCELED},
		{"non-finite beats calibration", fmt.Errorf("%w: layer: %w", model.ErrCalibration, quant.ErrNonFinite), mqEINVAL, mqENONFINITE},
		{"option", fmt.Errorf("%w bits: 7", plan.ErrOption), mqEIO, mqEINVAL},
		{"nothing to quantize", plan.ErrNothingToQuantize, mqEIO, mqEINVAL},
		{"calibration", fmt.Errorf("%w: no data", model.ErrCalibration), mqEIO, mqEINVAL},
		{"spec", fmt.Errorf("x: %w", quant.ErrSpec), mqEIO, mqEINVAL},
		{"quantized checkpoint format", fmt.Errorf("f: %w", model.ErrFormat), mqEINVAL, mqEFORMAT},
		{"safetensors invalid", fmt.Errorf("f: %w", safetensors.ErrInvalid), mqEINVAL, mqEFORMAT},
		{"safetensors unsupported", fmt.Errorf("f: %w", safetensors.ErrUnsupported), mqEFORMAT, mqEUNSUPPORTED},
		{"status error keeps its code", fail(mqEBUFFER, "short"), mqEINVAL, mqEBUFFER},
		{"plain error takes the fallback", errors.New("something"), mqEFORMAT, mqEFORMAT},
	}
	for _, tc := range tests {
		if got := int(modelErr(tc.err, status(tc.fallback))); got != tc.want {
			t.Errorf("modelErr(%s: %v, fallback %d) = %d, want %d", tc.name, tc.err, tc.fallback, got, tc.want)
		}
	}
}

// Every layer type the engine can quantize must have an MQ_LAYER_* bit, and no two bits may
// name the same type, or a C caller could not select it.
func TestLayerBitsCoverQuantizableTypes(t *testing.T) {
	seen := map[plan.LayerType]uint32{}
	var all uint32
	for _, lb := range layerBits {
		if lb.bit == 0 || lb.bit&(lb.bit-1) != 0 {
			t.Errorf("layer %q has bit %#x, want a single bit", lb.t, lb.bit)
		}
		if all&lb.bit != 0 {
			t.Errorf("bit %#x is used twice (again by %q)", lb.bit, lb.t)
		}
		all |= lb.bit
		if prev, ok := seen[lb.t]; ok {
			t.Errorf("layer %q has bits %#x and %#x", lb.t, prev, lb.bit)
		}
		seen[lb.t] = lb.bit
		if !lb.t.Quantizable() {
			t.Errorf("layer %q has a bit but is not quantizable", lb.t)
		}
	}
	for _, name := range []string{"linear", "conv1d", "conv2d", "conv3d", "lstm", "gru", "rnn", "embedding"} {
		lt, err := plan.ParseLayerType(name)
		if err != nil {
			t.Fatalf("ParseLayerType(%q): %v", name, err)
		}
		if _, ok := seen[lt]; !ok {
			t.Errorf("quantizable layer type %q has no MQ_LAYER_* bit", lt)
		}
	}
	for _, lt := range plan.DefaultLayerTypes {
		if seen[lt]&uint32(layerDefault) == 0 {
			t.Errorf("default layer type %q is not in MQ_LAYER_DEFAULT (%#x)", lt, uint32(layerDefault))
		}
	}
}
