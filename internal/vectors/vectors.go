// Package vectors reads the recorded test vectors of testdata/*.jsonl:
// one JSON object per line, each a frame recorded from the Python
// libraries, decoded into the test's own type.
package vectors

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"
)

// Read returns every line of the JSONL file at path, decoded as V; it
// fails the test on a missing file or a line that is not a V.
func Read[V any](t testing.TB, path string) []V {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []V
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var v V
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: bad vector line %q: %v", path, sc.Text(), err)
		}
		vs = append(vs, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}
