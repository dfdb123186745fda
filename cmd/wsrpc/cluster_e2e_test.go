//go:build unix

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/internal/services"
	"github.com/wsrpc/wsrpc/pubsub"
)

// nodeProc is a wsrpc serve process.
type nodeProc struct {
	id   string
	addr string // host:port
	cmd  *exec.Cmd
	done chan struct{}
	log  *lockedBuffer
}

// startNode runs wsrpc serve on a free loopback port with args, until the
// test ends (or kill).
func startNode(t *testing.T, id string, args ...string) *nodeProc {
	t.Helper()
	// The test binary is wsrpc itself with runAsCLI set (see TestMain).
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--addr", "127.0.0.1:0", "--node-id", id}, args...)...)
	cmd.Env = append(os.Environ(), runAsCLI+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	n := &nodeProc{id: id, cmd: cmd, done: make(chan struct{}), log: new(lockedBuffer)}
	cmd.Stderr = n.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	first := make(chan string, 1)
	go func() {
		defer close(n.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case first <- sc.Text():
			default:
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-n.done
		if t.Failed() {
			t.Logf("%s's log:\n%s", id, n.log.String())
		}
	})
	select {
	case line := <-first:
		url := strings.TrimPrefix(line, "wsrpc: serving on ws://")
		n.addr = strings.TrimSuffix(url, "/ws")
	case <-n.done:
		t.Fatalf("%s exited: %s", id, n.log.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not start: %s", id, n.log.String())
	}
	return n
}

// kill ends the node with SIGKILL: no goodbye to the cluster.
func (n *nodeProc) kill() {
	n.cmd.Process.Kill()
	<-n.done
}

// eventually calls f until it returns nil, for at most 30 s (a bound for a
// test that would hang, not a timing assertion); it returns f's last error.
func eventually(f func() error) error {
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = f(); err == nil {
			return nil
		}
	}
	return err
}

// TestClusterBehindNginx: three wsrpc serve processes on one Redis, behind
// nginx. A client connected through nginx gets the events published on
// every node and answers the calls routed to it from every node. Its node
// is killed (SIGKILL): it reconnects through nginx to another node, gets
// its subscriptions back, and routed calls find it there; the calls routed
// to a client that was on the dead node fail with "no node has client",
// once the others forgot it, and never hang.
func TestClusterBehindNginx(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	redis := services.Redis(t)
	var nodes []*nodeProc
	var addrs []string
	for i := range 3 {
		n := startNode(t, fmt.Sprintf("node%d", i+1), "--broker", "redis://"+redis.Addr)
		nodes = append(nodes, n)
		addrs = append(addrs, n.addr)
	}
	lb := services.NginxProxy(t, addrs...)
	quiet := slog.New(slog.DiscardHandler)

	methods := wsrpc.NewMux()
	wsrpc.Register(methods, "whoami", func(context.Context, struct{}) (string, error) { return "alice", nil })
	alice, err := pubsub.Dial(ctx, "ws://"+lb.Addr+"/pubsub/alice", &pubsub.ClientOptions{DialOptions: wsrpc.DialOptions{
		Methods:     methods,
		Retry:       wsrpc.RetryOptions{InitialInterval: 50 * time.Millisecond, MaxInterval: 500 * time.Millisecond},
		ConnOptions: wsrpc.ConnOptions{Logger: quiet},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	events := make(chan string, 100)
	if err := alice.Subscribe(ctx, "news", func(_ context.Context, ev pubsub.Event) error {
		events <- string(ev.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	callers := map[string]*wsrpc.Client{}
	for _, n := range nodes {
		callers[n.id] = dialQuiet(t, "ws://"+n.addr+"/ws", nil)
	}
	callAlice := func(from string) (string, error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return wsrpc.Call[string](cctx, callers[from], "call_client", map[string]string{"client_id": "alice", "method": "whoami"})
	}
	// The nodes know each other a beat after they start.
	for _, n := range nodes {
		if err := eventually(func() error { _, err := callAlice(n.id); return err }); err != nil {
			t.Fatalf("routed call from %s: %v", n.id, err)
		}
	}
	publish := func(from, data string) {
		t.Helper()
		if _, err := wsrpc.Call[any](ctx, callers[from], "publish", map[string]any{"topics": []string{"news"}, "data": data}); err != nil {
			t.Fatalf("publish on %s: %v", from, err)
		}
	}
	// Each node subscribes its pub/sub server to Redis in the background
	// (cluster.Join subscribes before it returns): the routed calls above
	// do not show that alice's has. Each node publishes until alice has
	// its event; a late copy of an earlier node's is skipped.
	for _, n := range nodes {
		want := `"from ` + n.id + `"`
		if err := eventually(func() error {
			publish(n.id, "from "+n.id)
			timeout := time.After(time.Second)
			for {
				select {
				case ev := <-events:
					if ev == want {
						return nil
					}
				case <-timeout:
					return errors.New("no event")
				}
			}
		}); err != nil {
			t.Fatalf("alice never got node %s's event: %v", n.id, err)
		}
	}

	// Where alice is; bob joins that node directly, without reconnecting.
	list, err := wsrpc.Call[[]map[string]string](ctx, callers[nodes[0].id], "clients", nil)
	if err != nil {
		t.Fatal(err)
	}
	var dead *nodeProc
	for _, c := range list {
		for _, n := range nodes {
			if c["client_id"] == "alice" && n.id == c["node"] {
				dead = n
			}
		}
	}
	if dead == nil {
		t.Fatalf("clients() = %v: alice is on no node", list)
	}
	dialQuiet(t, "ws://"+dead.addr+"/ws/bob", nil)
	var alive []*nodeProc
	for _, n := range nodes {
		if n != dead {
			alive = append(alive, n)
		}
	}
	if err := eventually(func() error {
		_, err := wsrpc.Call[any](ctx, callers[alive[0].id], "call_client", map[string]string{"client_id": "bob", "method": "_ping_"})
		return err
	}); err != nil {
		t.Fatalf("routed call to bob before the kill: %v", err)
	}

	dead.kill()
	// Alice reconnects through nginx to a live node and re-subscribes; the
	// routed calls find her there.
	for _, n := range alive {
		if err := eventually(func() error {
			got, err := callAlice(n.id)
			if err == nil && got != "alice" {
				err = fmt.Errorf("got %q", got)
			}
			return err
		}); err != nil {
			t.Fatalf("routed call from %s after alice's node died: %v", n.id, err)
		}
	}
	for len(events) > 0 {
		<-events
	}
	if err := eventually(func() error {
		publish(alive[1].id, "after")
		select {
		case ev := <-events:
			if ev != `"after"` {
				return fmt.Errorf("got %s", ev)
			}
			return nil
		case <-time.After(time.Second):
			return errors.New("no event")
		}
	}); err != nil {
		t.Fatalf("alice after reconnecting: %v", err)
	}
	// Bob's node is gone: routed calls to bob fail, and once the others
	// forget the node (a few missed beats) they say there is no bob.
	if err := eventually(func() error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := wsrpc.Call[any](cctx, callers[alive[0].id], "call_client", map[string]string{"client_id": "bob", "method": "_ping_"})
		if err == nil {
			t.Fatal("a routed call to bob, whose node is dead, succeeded")
		}
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a routed call to bob hung until its deadline: %v", err)
		}
		if !strings.Contains(err.Error(), `no node has client "bob"`) {
			return err
		}
		return nil
	}); err != nil {
		t.Fatalf("routed call to bob after his node died: %v", err)
	}
}
