package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// runAsCLI, set to 1 in the environment, makes this package's test binary
// run as wsrpc itself (TestMain): the browser client's tests start it as
// their `wsrpc serve`, built with this package's code and the race
// detector, with no separate go build.
const runAsCLI = "WSRPC_TEST_AS_CLI"

// TestBrowserClient runs the browser client's tests, wsrpcjs/test, with
// Node's test runner: the client against a real wsrpc serve (calls,
// errors, deadlines and cancellation, reconnects, keep-alive, pub/sub,
// tokens), and the demo page in headless Chromium driven by
// playwright-core. Under CI (CI set) a missing node, playwright-core or
// chromium fails; elsewhere this skips, naming what to install.
func TestBrowserClient(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node not found: apt-get install nodejs npm")
	}
	dir, err := filepath.Abs(filepath.Join("..", "..", "wsrpcjs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		missing(t, "playwright-core is not installed: run npm ci in wsrpcjs/")
	}
	if _, err := os.Stat(chromium()); err != nil {
		missing(t, "no "+chromium()+": apt-get install chromium")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	// Node 20 has a WebSocket only behind a flag; Node 22 has it always.
	if exec.Command(node, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)").Run() != nil {
		args = append(args, "--experimental-websocket")
	}
	files, err := filepath.Glob(filepath.Join(dir, "test", "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files in %s/test (%v)", dir, err)
	}
	// Each test is bounded (the demo's own limit is lower).
	args = append(args, "--test", "--test-reporter=tap", "--test-timeout=120000")
	args = append(args, files...)
	cmd := exec.CommandContext(t.Context(), node, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WSRPC_BIN="+self, runAsCLI+"=1", "WSRPC_CHROMIUM="+chromium())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %v: %v\n%s", args, err, out)
	}
	pass, fail, skipped := tapCount(out, "pass"), tapCount(out, "fail"), tapCount(out, "skipped")
	if pass == 0 || fail != 0 || (os.Getenv("CI") != "" && skipped != 0) {
		t.Fatalf("node --test: %d passed, %d failed, %d skipped\n%s", pass, fail, skipped, out)
	}
	t.Logf("node --test: %d passed, %d skipped", pass, skipped)
}

// chromium returns the path of the browser the tests drive.
func chromium() string {
	if p := os.Getenv("WSRPC_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// missing fails the test under CI, and skips it elsewhere, with why.
func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// tapCount returns the count of a TAP summary line ("# pass 15"), or -1.
func tapCount(out []byte, name string) int {
	m := regexp.MustCompile(`(?m)^# ` + name + ` (\d+)$`).FindSubmatch(out)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
