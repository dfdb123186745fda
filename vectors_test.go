package wsrpc

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsrpc/wsrpc/internal/vectors"
	"github.com/wsrpc/wsrpc/internal/wire"
)

// vector is one line of testdata/seed-vectors.jsonl: a frame recorded from
// the Python library (a copy of ../shared/protocol/seed-vectors.jsonl).
type vector struct {
	Case      string  `json:"case"`
	Direction string  `json:"direction"`
	FrameType string  `json:"frame_type"`
	Frame     *string `json:"frame"`
}

func loadVectors(t *testing.T) []vector {
	t.Helper()
	vs := readVectors(t, "testdata/seed-vectors.jsonl")
	if len(vs) < 30 {
		t.Fatalf("only %d vectors", len(vs))
	}
	return vs
}

// readVectors reads a file of vectors.
func readVectors(t *testing.T, path string) []vector { return vectors.Read[vector](t, path) }

// seedMux exposes the methods the recorded Python server had.
func seedMux() *Mux {
	m := NewMux()
	RegisterUtilities(m)
	type point struct {
		X float64 `json:"x"`
		Y float64 `json:"y"`
	}
	Register(m, "concat", func(_ context.Context, a struct{ A, B string }) (string, error) { return a.A + a.B, nil })
	Register(m, "add", func(_ context.Context, a struct{ A, B float64 }) (float64, error) { return a.A + a.B, nil })
	Register(m, "count", func(_ context.Context, a struct{ N int }) (int, error) { return a.N + 1, nil })
	Register(m, "flag", func(context.Context, struct{}) (bool, error) { return true, nil })
	Register(m, "points", func(_ context.Context, a struct{ N int }) ([]point, error) {
		ps := make([]point, a.N)
		for i := range ps {
			ps[i] = point{X: float64(i), Y: float64(2 * i)}
		}
		return ps, nil
	})
	Register(m, "nothing", func(context.Context, struct{}) (any, error) { return nil, nil })
	Register(m, "boom", func(context.Context, struct{}) (any, error) { return nil, errors.New("boom") })
	return m
}

// errorCodes is what wsrpc answers where the Python library closed the
// connection or stayed silent.
var errorCodes = map[string]Code{
	"handler-raises":   CodeInternalError,
	"unknown-method":   CodeMethodNotFound,
	"missing-argument": CodeInvalidParams,
	"private-method":   CodeMethodNotFound,
	"not-json":         CodeParseError,
}

func TestVectorsDecode(t *testing.T) {
	for _, v := range loadVectors(t) {
		if v.Frame == nil {
			continue
		}
		var f wire.Frame
		err := wire.Decode([]byte(*v.Frame), &f)
		if v.Case == "not-json" {
			if !errors.Is(err, wire.ErrParse) {
				t.Errorf("%s: Decode error = %v, want ErrParse", v.Case, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s (%s): Decode: %v", v.Case, v.Direction, err)
			continue
		}
		// The frame means what it says: compare with encoding/json.
		var env struct {
			Request *struct {
				Method    string           `json:"method"`
				Arguments *json.RawMessage `json:"arguments"`
				CallID    *string          `json:"call_id"`
			} `json:"request"`
			Response *struct {
				Result     json.RawMessage `json:"result"`
				ResultType string          `json:"result_type"`
				CallID     *string         `json:"call_id"`
			} `json:"response"`
		}
		if err := json.Unmarshal([]byte(*v.Frame), &env); err != nil {
			t.Fatal(err)
		}
		switch {
		case env.Request != nil:
			if f.Kind != wire.KindRequest || string(f.Method) != env.Request.Method {
				t.Errorf("%s: decoded kind %v method %q", v.Case, f.Kind, f.Method)
			}
			if env.Request.Arguments != nil && !jsonEqual(t, f.Args, *env.Request.Arguments) {
				t.Errorf("%s: args %s, want %s", v.Case, f.Args, *env.Request.Arguments)
			}
			if env.Request.CallID != nil && f.ID() != *env.Request.CallID {
				t.Errorf("%s: call id %q, want %q", v.Case, f.ID(), *env.Request.CallID)
			}
		case env.Response != nil:
			if f.Kind != wire.KindResponse || string(f.ResultType) != env.Response.ResultType ||
				!jsonEqual(t, f.Result, env.Response.Result) {
				t.Errorf("%s: decoded %v %q %s", v.Case, f.Kind, f.ResultType, f.Result)
			}
		}
	}
}

// rawDial opens a plain WebSocket to url, offering no subprotocol: the
// server sees what a Python client looks like.
func rawDial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// roundTripRaw sends frame and returns the next frame received.
func roundTripRaw(t *testing.T, ws *websocket.Conn, mt int, frame string) map[string]any {
	t.Helper()
	if err := ws.WriteMessage(mt, []byte(frame)); err != nil {
		t.Fatal(err)
	}
	return readRaw(t, ws)
}

func readRaw(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("answer %s is not JSON: %v", data, err)
	}
	return m
}

// checkAlive shows the connection still serves calls.
func checkAlive(t *testing.T, ws *websocket.Conn) {
	t.Helper()
	got := roundTripRaw(t, ws, websocket.TextMessage, `{"request": {"method": "_ping_", "arguments": {}, "call_id": "alive"}, "response": null}`)
	resp, _ := got["response"].(map[string]any)
	if resp == nil || resp["result"] != "pong" || resp["call_id"] != "alive" {
		t.Fatalf("connection no longer answers _ping_: %v", got)
	}
}

var hex32 = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestVectorsServer sends every recorded client->server frame to a wsrpc
// server and checks that the answer means the same JSON as the Python
// server's, ids and pids aside; where Python closed or stayed silent, wsrpc
// answers with an error response and keeps the connection.
func TestVectorsServer(t *testing.T) {
	_, url := testServer(t, seedMux(), nil)
	vs := loadVectors(t)
	ws := rawDial(t, url)
	for i, v := range vs {
		if v.Direction != "client->server" || v.Frame == nil || v.FrameType != "text" {
			continue
		}
		if i+1 >= len(vs) || vs[i+1].Case != v.Case || vs[i+1].Direction != "server->client" {
			continue // a response from a client: see TestVectorsClient
		}
		want := vs[i+1]
		t.Run(v.Case, func(t *testing.T) {
			got := roundTripRaw(t, ws, websocket.TextMessage, *v.Frame)
			if got["request"] != nil {
				t.Fatalf("request must be null: %v", got)
			}
			resp, _ := got["response"].(map[string]any)
			if resp == nil {
				t.Fatalf("no response object: %v", got)
			}
			var sent map[string]any
			if json.Unmarshal([]byte(*v.Frame), &sent) == nil {
				req, _ := sent["request"].(map[string]any)
				if req["call_id"] != resp["call_id"] {
					t.Errorf("call_id %v, want the request's %v", resp["call_id"], req["call_id"])
				}
			} else if resp["call_id"] != nil {
				t.Errorf("call_id %v, want null", resp["call_id"])
			}
			if want.Frame == nil {
				code, ok := errorCodes[v.Case]
				if !ok {
					t.Fatalf("no expected error for %q (%s)", v.Case, want.FrameType)
				}
				e, _ := resp["error"].(map[string]any)
				if resp["result_type"] != "error" || resp["result"] != nil || e == nil || e["code"] != float64(code) || e["message"] == "" {
					t.Errorf("got %v, want an error response with code %d", resp, code)
				}
				checkAlive(t, ws)
				return
			}
			var wantEnv map[string]any
			if err := json.Unmarshal([]byte(*want.Frame), &wantEnv); err != nil {
				t.Fatal(err)
			}
			wantResp := wantEnv["response"].(map[string]any)
			delete(wantResp, "call_id")
			delete(resp, "call_id")
			switch v.Case {
			case "channel-id":
				if s, _ := resp["result"].(string); !hex32.MatchString(s) {
					t.Errorf("channel id %v is not 32 hex digits", resp["result"])
				}
				resp["result"], wantResp["result"] = nil, nil
			case "process-details":
				keysOnly(resp["result"])
				keysOnly(wantResp["result"])
			}
			if !reflect.DeepEqual(resp, wantResp) {
				t.Errorf("answer means %v\nPython answered   %v", resp, wantResp)
			}
		})
	}
}

// keysOnly blanks the values of a JSON object, keeping its keys.
func keysOnly(v any) {
	if m, ok := v.(map[string]any); ok {
		for k := range m {
			m[k] = nil
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

// TestVectorsClient plays the recorded Python server against a wsrpc
// client: the server's call to the client's echo gets an answer that means
// the same as the Python client's.
func TestVectorsClient(t *testing.T) {
	var req, want string
	for _, v := range loadVectors(t) {
		if v.Case == "server-calls-client" && v.Frame != nil {
			if v.Direction == "server->client" {
				req = *v.Frame
			} else {
				want = *v.Frame
			}
		}
	}
	if req == "" || want == "" {
		t.Fatal("server-calls-client vectors missing")
	}
	got := make(chan []byte, 1)
	up := websocket.Upgrader{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		if ws.Subprotocol() != "" {
			t.Errorf("a server that offers no subprotocol got %q", ws.Subprotocol())
		}
		ws.WriteMessage(websocket.TextMessage, []byte(req))
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if strings.Contains(string(data), `"_ping_"`) {
				continue // keep-alive
			}
			got <- data
			return
		}
	}))
	defer hs.Close()
	m := NewMux()
	RegisterUtilities(m)
	testDial(t, "ws"+strings.TrimPrefix(hs.URL, "http"), &DialOptions{Methods: m, DisableReconnect: true})
	select {
	case data := <-got:
		if !jsonEqual(t, data, []byte(want)) {
			t.Errorf("client answered %s\nPython client answered %s", data, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer from the client")
	}
}

// TestVectorsRequests checks that the requests wsrpc sends mean the same as
// the Python client's, ids aside, and that its call ids have their form.
func TestVectorsRequests(t *testing.T) {
	frames := make(chan []byte, 16)
	up := websocket.Upgrader{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			frames <- data
			var f wire.Frame
			if wire.Decode(data, &f) == nil && f.Kind == wire.KindRequest {
				out := wire.AppendResponseEnd(append(wire.AppendResponseStart(nil), "null"...), "unknown-type", f.CallID)
				ws.WriteMessage(websocket.TextMessage, out)
			}
		}
	}))
	defer hs.Close()
	cl := testDial(t, "ws"+strings.TrimPrefix(hs.URL, "http"), &DialOptions{DisableReconnect: true, ConnOptions: ConnOptions{KeepAlive: KeepAlive{Interval: -1}}})
	for _, v := range loadVectors(t) {
		if v.Direction != "client->server" || v.Frame == nil || v.FrameType != "text" || v.Case == "not-json" {
			continue
		}
		var env struct {
			Request struct {
				Method    string          `json:"method"`
				Arguments json.RawMessage `json:"arguments"`
				CallID    *string         `json:"call_id"`
			} `json:"request"`
		}
		if err := json.Unmarshal([]byte(*v.Frame), &env); err != nil || env.Request.Method == "" {
			continue
		}
		if strings.HasPrefix(env.Request.Method, "_") && env.Request.Method != "_ping_" && env.Request.Method != "_get_channel_id_" {
			continue
		}
		var args any
		if len(env.Request.Arguments) > 0 {
			args = env.Request.Arguments
		}
		if err := cl.Call(ctxT(t), env.Request.Method, args, nil); err != nil {
			t.Fatalf("%s: %v", v.Case, err)
		}
		sent := <-frames
		var got, want map[string]any
		json.Unmarshal(sent, &got)
		json.Unmarshal([]byte(*v.Frame), &want)
		gotReq, wantReq := got["request"].(map[string]any), want["request"].(map[string]any)
		id, _ := gotReq["call_id"].(string)
		if !hex32.MatchString(id) || id[12] != '4' || !strings.ContainsRune("89ab", rune(id[16])) {
			t.Errorf("%s: call id %q is not the hex of a random UUID", v.Case, id)
		}
		delete(gotReq, "call_id")
		delete(wantReq, "call_id")
		if _, ok := wantReq["arguments"]; !ok {
			wantReq["arguments"] = map[string]any{} // absent means {}
		}
		if !reflect.DeepEqual(got, map[string]any{"request": gotReq, "response": nil}) || !reflect.DeepEqual(gotReq, wantReq) {
			t.Errorf("%s: sent %s\nPython sent %s", v.Case, sent, *v.Frame)
		}
	}
}

// TestTraceContextVectors replays testdata/tracecontext-vectors.jsonl:
// requests carrying "traceparent" and "tracestate" beside method,
// arguments and call_id, and the answers of fastapi_websocket_rpc's server
// and client to them (recorded from the library at commit 22578a3, with
// pydantic 1.10, fastapi 0.92 and websockets 10.4). The Python side
// answered each as if the members were absent, and kept the connection:
// that is what lets a tracer send them to a peer without the extension.
// wsrpc decodes them, and answers the same requests as Python did.
func TestTraceContextVectors(t *testing.T) {
	vs := readVectors(t, "testdata/tracecontext-vectors.jsonl")
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	var serverReqs []int
	var clientReq, clientAns string
	for i, v := range vs {
		if v.Frame == nil {
			t.Fatalf("%s: no frame (%s): the Python side did not answer", v.Case, v.FrameType)
		}
		var f wire.Frame
		if err := wire.Decode([]byte(*v.Frame), &f); err != nil {
			t.Fatalf("%s: %v", v.Case, err)
		}
		if f.Kind != wire.KindRequest {
			continue
		}
		if v.Case != "trace-context-server-alive" && string(f.TraceParent) != parent {
			t.Errorf("%s: traceparent %q, want %q", v.Case, f.TraceParent, parent)
		}
		// The Python answer: the echoed text, under the request's id.
		if i+1 >= len(vs) || vs[i+1].Case != v.Case || vs[i+1].Frame == nil {
			t.Fatalf("%s: no recorded answer", v.Case)
		}
		var ans wire.Frame
		if err := wire.Decode([]byte(*vs[i+1].Frame), &ans); err != nil || ans.Kind != wire.KindResponse || ans.ID() != f.ID() || ans.Error != nil {
			t.Fatalf("%s: Python's answer %s (%v)", v.Case, *vs[i+1].Frame, err)
		}
		var args struct{ Text string }
		json.Unmarshal(f.Args, &args)
		if want, _ := json.Marshal(args.Text); string(f.Method) == "echo" && string(ans.Result) != string(want) {
			t.Errorf("%s: Python answered %s, want %s", v.Case, ans.Result, want)
		}
		if v.Direction == "client->server" {
			serverReqs = append(serverReqs, i)
		} else {
			clientReq, clientAns = *v.Frame, *vs[i+1].Frame
		}
	}
	if len(serverReqs) < 3 || clientReq == "" {
		t.Fatalf("vectors missing: %d server requests, client request %v", len(serverReqs), clientReq != "")
	}

	_, url := testServer(t, seedMux(), nil)
	ws := rawDial(t, url)
	for _, i := range serverReqs {
		got := roundTripRaw(t, ws, websocket.TextMessage, *vs[i].Frame)
		var want map[string]any
		json.Unmarshal([]byte(*vs[i+1].Frame), &want)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: wsrpc answered %v\nPython answered %v", vs[i].Case, got, want)
		}
	}

	got := make(chan []byte, 1)
	up := websocket.Upgrader{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		ws.WriteMessage(websocket.TextMessage, []byte(clientReq))
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			if !strings.Contains(string(data), `"_ping_"`) {
				got <- data
				return
			}
		}
	}))
	defer hs.Close()
	m := NewMux()
	RegisterUtilities(m)
	testDial(t, "ws"+strings.TrimPrefix(hs.URL, "http"), &DialOptions{Methods: m, DisableReconnect: true})
	select {
	case data := <-got:
		if !jsonEqual(t, data, []byte(clientAns)) {
			t.Errorf("client answered %s\nPython client answered %s", data, clientAns)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer from the client")
	}
}
