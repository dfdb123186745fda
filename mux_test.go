package wsrpc

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// TestAppendFloat: floats are written as encoding/json writes them, with a
// fractional part added where it has none.
func TestAppendFloat(t *testing.T) {
	for _, f := range []float64{0, 1, -3, 3.5, 1e-7, 1.5e-9, 1e21, 123456789, 1e20, -0.000001, math.MaxFloat64, math.SmallestNonzeroFloat64} {
		for _, bits := range []int{32, 64} {
			v := f
			var std []byte
			if bits == 32 {
				if math.Abs(f) > math.MaxFloat32 {
					continue
				}
				std, _ = json.Marshal(float32(f))
				v = float64(float32(f))
			} else {
				std, _ = json.Marshal(f)
			}
			got, typ, err := appendFloat(nil, v, bits)
			want := string(std)
			if !strings.ContainsAny(want, ".eE") {
				want += ".0"
			}
			if err != nil || typ != "float" || string(got) != want {
				t.Errorf("appendFloat(%v, %d) = %s, %q, %v; want %s", f, bits, got, typ, err, want)
			}
		}
	}
	if _, _, err := appendFloat(nil, math.NaN(), 64); err == nil {
		t.Error("NaN encoded")
	}
}
