package otelwsrpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/wsrpc/wsrpc"
	"github.com/wsrpc/wsrpc/otelwsrpc"
)

// side is one end's telemetry: its own tracer and meter providers, with
// in-process exporters.
type side struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	obs    *otelwsrpc.Observer
}

func newSide(t *testing.T, opts *otelwsrpc.Options) *side {
	t.Helper()
	s := &side{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(s.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.reader))
	t.Cleanup(func() {
		s.tp.Shutdown(context.Background())
		mp.Shutdown(context.Background())
	})
	o := otelwsrpc.Options{}
	if opts != nil {
		o = *opts
	}
	o.TracerProvider, o.MeterProvider = s.tp, mp
	obs, err := otelwsrpc.New(&o)
	if err != nil {
		t.Fatal(err)
	}
	s.obs = obs
	return s
}

// span returns the one ended span named name of kind kind.
func (s *side) span(t *testing.T, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, sp := range s.spans.Ended() {
		if sp.Name() == name && sp.SpanKind() == kind {
			found = append(found, sp)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d ended %v spans named %q, want 1 (all: %v)", len(found), kind, name, names(s.spans.Ended()))
	}
	return found[0]
}

// ended waits until the recorder holds an ended span named name of kind
// kind, and returns it.
func (s *side) ended(t *testing.T, name string, kind trace.SpanKind) sdktrace.ReadOnlySpan {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) { // against a hang
		for _, sp := range s.spans.Ended() {
			if sp.Name() == name && sp.SpanKind() == kind {
				return s.span(t, name, kind)
			}
		}
	}
	t.Fatalf("no ended %v span named %q (all: %v)", kind, name, names(s.spans.Ended()))
	return nil
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var n []string
	for _, sp := range spans {
		n = append(n, sp.SpanKind().String()+" "+sp.Name())
	}
	return n
}

func attr(sp sdktrace.ReadOnlySpan, key attribute.Key) (attribute.Value, bool) {
	for _, kv := range sp.Attributes() {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

// histogram returns the data points of the histogram named name.
func (s *side) histogram(t *testing.T, name string) []metricdata.HistogramDataPoint[float64] {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("%s: unit %q, want s", name, m.Unit)
			}
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				t.Fatalf("%s is a %T, want a float64 histogram", name, m.Data)
			}
			return h.DataPoints
		}
	}
	return nil
}

// point returns the data point of method in points (and, if code is not
// "", of that rpc.response.status_code); ok is false if there is none.
func point(points []metricdata.HistogramDataPoint[float64], method, code string) (metricdata.HistogramDataPoint[float64], bool) {
	for _, p := range points {
		m, _ := p.Attributes.Value("rpc.method")
		c, _ := p.Attributes.Value("rpc.response.status_code")
		if sys, _ := p.Attributes.Value("rpc.system.name"); sys.AsString() != "jsonrpc" {
			continue
		}
		if m.AsString() == method && c.AsString() == code {
			return p, true
		}
	}
	return metricdata.HistogramDataPoint[float64]{}, false
}

// serve starts a wsrpc server over 127.0.0.1 with mux and observer obs; it
// returns the server and its ws:// URL.
func serve(t *testing.T, mux *wsrpc.Mux, obs wsrpc.Observer) (*wsrpc.Server, string) {
	t.Helper()
	srv, err := wsrpc.NewServer(mux, &wsrpc.ServerOptions{ConnOptions: wsrpc.ConnOptions{Observer: obs}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return srv, "ws" + strings.TrimPrefix(hs.URL, "http")
}

func dial(t *testing.T, url string, opts *wsrpc.DialOptions) *wsrpc.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // against a hang
	defer cancel()
	cl, err := wsrpc.Dial(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

type textArgs struct {
	Text string `json:"text"`
}

// TestNestedTrace: a Go client's call, the server's handling of it, the
// handler's callback to the client and the client's handling of that are
// one trace, each span the child of the one before, with the semantic
// conventions' attributes; a failed call's spans say how it failed; the
// durations are recorded under the RPC metrics' names.
func TestNestedTrace(t *testing.T) {
	ss, cs := newSide(t, nil), newSide(t, nil)
	mux := wsrpc.NewMux()
	wsrpc.Register(mux, "ask_client", func(ctx context.Context, a textArgs) (string, error) {
		return wsrpc.Call[string](ctx, wsrpc.ConnFromContext(ctx), "echo", a)
	})
	wsrpc.Register(mux, "fail", func(context.Context, struct{}) (string, error) {
		return "", wsrpc.Errorf(wsrpc.CodeInvalidParams, "no")
	})
	srv, url := serve(t, mux, ss.obs)
	methods := wsrpc.NewMux()
	wsrpc.RegisterUtilities(methods)
	cl := dial(t, url, &wsrpc.DialOptions{Methods: methods, ConnOptions: wsrpc.ConnOptions{Observer: cs.obs}})

	ctx, root := cs.tp.Tracer("test").Start(context.Background(), "root")
	const calls = 3
	for range calls {
		if got, err := wsrpc.Call[string](ctx, cl, "ask_client", textArgs{"nested"}); err != nil || got != "nested" {
			t.Fatalf("ask_client = %q, %v", got, err)
		}
	}
	if _, err := wsrpc.Call[string](ctx, cl, "fail", nil); wsrpc.ErrorCode(err) != wsrpc.CodeInvalidParams {
		t.Fatalf("fail: %v", err)
	}
	if _, err := wsrpc.Call[string](ctx, cl, "_get_channel_id_", nil); err != nil {
		t.Fatal(err)
	}
	root.End()
	// Close waits for the handlers, and so for their spans to end.
	cl.Close()
	srv.Close()

	// Of the three ask_client chains, follow the first.
	var client, server, cbClient, cbServer sdktrace.ReadOnlySpan
	for _, sp := range cs.spans.Ended() {
		switch {
		case sp.Name() == "ask_client" && sp.SpanKind() == trace.SpanKindClient && client == nil:
			client = sp
		case sp.Name() == "echo" && sp.SpanKind() == trace.SpanKindServer && cbServer == nil:
			cbServer = sp
		case strings.HasPrefix(sp.Name(), "_"):
			t.Errorf("span %q for a method whose name begins with _", sp.Name())
		}
	}
	if client == nil || cbServer == nil {
		t.Fatalf("client spans: %v", names(cs.spans.Ended()))
	}
	// The server's spans of the call the client's first span is of.
	for _, sp := range ss.spans.Ended() {
		if sp.Name() == "ask_client" && sp.SpanKind() == trace.SpanKindServer && sp.Parent().SpanID() == client.SpanContext().SpanID() {
			server = sp
		}
	}
	if server == nil {
		t.Fatalf("no server span is the child of the client's: %v", names(ss.spans.Ended()))
	}
	for _, sp := range ss.spans.Ended() {
		if sp.Name() == "echo" && sp.SpanKind() == trace.SpanKindClient && sp.Parent().SpanID() == server.SpanContext().SpanID() {
			cbClient = sp
		}
	}
	if cbClient == nil {
		t.Fatalf("no callback span is the child of the server's: %v", names(ss.spans.Ended()))
	}
	chain := []struct {
		what   string
		span   sdktrace.ReadOnlySpan
		parent trace.SpanContext
		remote bool
	}{
		{"the client's call", client, root.SpanContext(), false},
		{"the server's handling", server, client.SpanContext(), true},
		{"the server's callback", cbClient, server.SpanContext(), false},
	}
	for _, c := range chain {
		if c.span.SpanContext().TraceID() != root.SpanContext().TraceID() {
			t.Errorf("%s is in trace %s, want %s", c.what, c.span.SpanContext().TraceID(), root.SpanContext().TraceID())
		}
		if c.span.Parent().SpanID() != c.parent.SpanID() || c.span.Parent().IsRemote() != c.remote {
			t.Errorf("%s: parent %s (remote %v), want %s (remote %v)", c.what, c.span.Parent().SpanID(), c.span.Parent().IsRemote(), c.parent.SpanID(), c.remote)
		}
	}
	// The client's handling of the callback: its parent is the callback
	// span of one of the server's calls.
	if cbServer.SpanContext().TraceID() != root.SpanContext().TraceID() || !cbServer.Parent().IsRemote() {
		t.Errorf("the client's handling of the callback: trace %s, parent remote %v", cbServer.SpanContext().TraceID(), cbServer.Parent().IsRemote())
	}
	parentFound := false
	for _, sp := range ss.spans.Ended() {
		if sp.SpanContext().SpanID() == cbServer.Parent().SpanID() && sp.Name() == "echo" && sp.SpanKind() == trace.SpanKindClient {
			parentFound = true
		}
	}
	if !parentFound {
		t.Error("the client's handling of the callback is not the child of a server's callback span")
	}

	for _, sp := range []sdktrace.ReadOnlySpan{client, server, cbClient, cbServer} {
		want := map[attribute.Key]string{"rpc.system.name": "jsonrpc", "rpc.method": sp.Name(), "network.peer.address": "127.0.0.1"}
		for k, v := range want {
			if got, _ := attr(sp, k); got.AsString() != v {
				t.Errorf("%v %s: %s = %q, want %q", sp.SpanKind(), sp.Name(), k, got.AsString(), v)
			}
		}
		if port, _ := attr(sp, "network.peer.port"); port.AsInt64() <= 0 {
			t.Errorf("%v %s: no network.peer.port", sp.SpanKind(), sp.Name())
		}
		if id, _ := attr(sp, otelwsrpc.ConnIDKey); len(id.AsString()) != 32 {
			t.Errorf("%v %s: connection id %q", sp.SpanKind(), sp.Name(), id.AsString())
		}
		if sp.Status().Code != codes.Unset {
			t.Errorf("%v %s: status %v, want unset", sp.SpanKind(), sp.Name(), sp.Status())
		}
		if !sp.EndTime().After(sp.StartTime()) {
			t.Errorf("%v %s: from %v to %v", sp.SpanKind(), sp.Name(), sp.StartTime(), sp.EndTime())
		}
	}
	if got, _ := attr(client, "server.port"); got.AsInt64() <= 0 {
		t.Errorf("the client span has no server.port")
	}
	for _, sp := range []sdktrace.ReadOnlySpan{cs.span(t, "fail", trace.SpanKindClient), ss.span(t, "fail", trace.SpanKindServer)} {
		code, _ := attr(sp, "rpc.response.status_code")
		typ, _ := attr(sp, "error.type")
		if sp.Status().Code != codes.Error || code.AsString() != "-32602" || typ.AsString() != "-32602" {
			t.Errorf("%v fail: status %v, status code %q, error type %q; want Error, -32602, -32602", sp.SpanKind(), sp.Status(), code.AsString(), typ.AsString())
		}
	}

	// Metrics: the client measured its calls to the server and its
	// handling of the callbacks; the server, the other way round.
	for _, m := range []struct {
		side         *side
		name, method string
		code         string
		count        uint64
	}{
		{cs, "rpc.client.call.duration", "ask_client", "", calls},
		{cs, "rpc.client.call.duration", "fail", "-32602", 1},
		{cs, "rpc.server.call.duration", "echo", "", calls},
		{ss, "rpc.server.call.duration", "ask_client", "", calls},
		{ss, "rpc.server.call.duration", "fail", "-32602", 1},
		{ss, "rpc.client.call.duration", "echo", "", calls},
	} {
		p, ok := point(m.side.histogram(t, m.name), m.method, m.code)
		if !ok || p.Count != m.count || p.Sum <= 0 {
			t.Errorf("%s{rpc.method=%s, status %q}: %d calls, sum %v s (seen %v), want %d calls", m.name, m.method, m.code, p.Count, p.Sum, ok, m.count)
		}
	}
	for _, name := range []string{"rpc.client.call.duration", "rpc.server.call.duration"} {
		for _, p := range append(cs.histogram(t, name), ss.histogram(t, name)...) {
			if m, _ := p.Attributes.Value("rpc.method"); strings.HasPrefix(m.AsString(), "_") {
				t.Errorf("%s measured %s", name, m.AsString())
			}
		}
	}
}

// rawServer accepts one WebSocket at a time, offering no subprotocol (as
// a Python server), and answers every request with null, sending what it
// read to frames.
func rawServer(t *testing.T, frames chan<- []byte) string {
	t.Helper()
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
			var env struct {
				Request *struct {
					Method string `json:"method"`
					CallID string `json:"call_id"`
				} `json:"request"`
			}
			if json.Unmarshal(data, &env) != nil || env.Request == nil {
				continue
			}
			if env.Request.Method != "_ping_" {
				frames <- data
			}
			id, _ := json.Marshal(env.Request.CallID)
			ws.WriteMessage(websocket.TextMessage, []byte(`{"request":null,"response":{"result":null,"result_type":"unknown-type","call_id":`+string(id)+`}}`))
		}
	}))
	t.Cleanup(hs.Close)
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// TestPropagationNeedsExtension: a peer that did not negotiate the
// extension gets no trace context, unless AlwaysPropagate; then it gets
// the call's span's, as W3C traceparent and tracestate.
func TestPropagationNeedsExtension(t *testing.T) {
	for _, always := range []bool{false, true} {
		frames := make(chan []byte, 4)
		url := rawServer(t, frames)
		cs := newSide(t, &otelwsrpc.Options{AlwaysPropagate: always})
		cl := dial(t, url, &wsrpc.DialOptions{DisableReconnect: true, ConnOptions: wsrpc.ConnOptions{Observer: cs.obs}})
		if err := cl.Call(context.Background(), "m", nil, nil); err != nil {
			t.Fatal(err)
		}
		var got struct {
			Request map[string]any `json:"request"`
		}
		var data []byte
		select {
		case data = <-frames:
		case <-time.After(10 * time.Second):
			t.Fatal("no request")
		}
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatal(err)
		}
		cl.Close()
		sp := cs.span(t, "m", trace.SpanKindClient)
		parent, hasParent := got.Request["traceparent"].(string)
		if !always {
			if hasParent || got.Request["tracestate"] != nil {
				t.Errorf("a peer without the extension got trace context: %s", data)
			}
			continue
		}
		want := "00-" + sp.SpanContext().TraceID().String() + "-" + sp.SpanContext().SpanID().String() + "-01"
		if parent != want {
			t.Errorf("AlwaysPropagate: traceparent %q, want %q (%s)", parent, want, data)
		}
	}
}

// TestInboundTraceContext: an inbound call's trace context, from a peer
// with or without the extension, makes the server span a child of the
// caller's; with PublicEndpoint, the server span starts a trace of its
// own, linked to the caller's span.
func TestInboundTraceContext(t *testing.T) {
	const traceID, spanID = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	frame := `{"request":{"method":"echo","arguments":{"text":"x"},"call_id":"c1","traceparent":"00-` + traceID + `-` + spanID + `-01","tracestate":"k=v"},"response":null}`
	for _, public := range []bool{false, true} {
		ss := newSide(t, &otelwsrpc.Options{PublicEndpoint: public})
		mux := wsrpc.NewMux()
		wsrpc.RegisterUtilities(mux)
		srv, url := serve(t, mux, ss.obs)
		ws, _, err := websocket.DefaultDialer.Dial(url, nil) // no subprotocol: no extension
		if err != nil {
			t.Fatal(err)
		}
		ws.WriteMessage(websocket.TextMessage, []byte(frame))
		if _, data, err := ws.ReadMessage(); err != nil || !strings.Contains(string(data), `"x"`) {
			t.Fatalf("answer %s, %v", data, err)
		}
		ws.Close()
		srv.Close()
		sp := ss.span(t, "echo", trace.SpanKindServer)
		if !public {
			if sp.SpanContext().TraceID().String() != traceID || sp.Parent().SpanID().String() != spanID || !sp.Parent().IsRemote() {
				t.Errorf("trace %s parent %s, want %s %s", sp.SpanContext().TraceID(), sp.Parent().SpanID(), traceID, spanID)
			}
			if sp.Parent().TraceState().Get("k") != "v" {
				t.Errorf("the caller's tracestate was lost: %q", sp.Parent().TraceState())
			}
			continue
		}
		links := sp.Links()
		if sp.SpanContext().TraceID().String() == traceID || sp.Parent().IsValid() ||
			len(links) != 1 || links[0].SpanContext.SpanID().String() != spanID {
			t.Errorf("PublicEndpoint: trace %s, parent %v, links %v; want a new trace linked to %s", sp.SpanContext().TraceID(), sp.Parent(), links, spanID)
		}
	}
}

// TestFilterAndGo: Options.Filter chooses the calls traced (here every
// one, "_get_channel_id_" included), and a call made with Go gets its
// span and carries its trace context as one made with Call does.
func TestFilterAndGo(t *testing.T) {
	ss := newSide(t, nil)
	cs := newSide(t, &otelwsrpc.Options{Filter: func(string, wsrpc.Direction) bool { return true }})
	mux := wsrpc.NewMux()
	wsrpc.RegisterUtilities(mux)
	srv, url := serve(t, mux, ss.obs)
	cl := dial(t, url, &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Observer: cs.obs}})
	ctx := context.Background()
	if _, err := wsrpc.Call[string](ctx, cl, "_get_channel_id_", nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	if err := cl.Go(ctx, "echo", textArgs{"go"}, func(r *wsrpc.Reply) { done <- r.Err() }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to Go")
	}
	cl.Close()
	srv.Close()
	cs.span(t, "_get_channel_id_", trace.SpanKindClient)
	client, server := cs.span(t, "echo", trace.SpanKindClient), ss.span(t, "echo", trace.SpanKindServer)
	if server.Parent().SpanID() != client.SpanContext().SpanID() || server.SpanContext().TraceID() != client.SpanContext().TraceID() {
		t.Errorf("the server's span of a Go call: parent %s in trace %s, want %s in %s",
			server.Parent().SpanID(), server.SpanContext().TraceID(), client.SpanContext().SpanID(), client.SpanContext().TraceID())
	}
}

// TestErrorTypes: a call that failed without an answer has an error.type
// that says how, on its span and on its duration's data point, and no
// rpc.response.status_code: deadline_exceeded when its ctx's deadline
// passed, canceled when its ctx was canceled, connection_lost when the
// connection dropped under it.
func TestErrorTypes(t *testing.T) {
	cs := newSide(t, nil)
	mux := wsrpc.NewMux()
	wait := func(ctx context.Context, _ struct{}) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	// Each outcome on a method of its own, to tell their spans and data
	// points apart.
	wsrpc.Register(mux, "wait", wait)
	wsrpc.Register(mux, "wait2", wait)
	wsrpc.Register(mux, "drop", func(ctx context.Context, a struct{}) (any, error) {
		wsrpc.ConnFromContext(ctx).Close()
		return wait(ctx, a)
	})
	_, url := serve(t, mux, nil)
	cl := dial(t, url, &wsrpc.DialOptions{ConnOptions: wsrpc.ConnOptions{Observer: cs.obs}})

	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := wsrpc.Call[any](short, cl, "wait", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait past its deadline: %v", err)
	}
	canceled, cancel2 := context.WithCancel(context.Background())
	replied := make(chan error, 1)
	if err := cl.Go(canceled, "wait2", nil, func(r *wsrpc.Reply) { replied <- r.Err() }); err != nil {
		t.Fatal(err)
	}
	cancel2()
	select {
	case err := <-replied:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("wait2 canceled: %v", err)
		}
	case <-time.After(time.Minute): // against a hang
		t.Fatal("no reply to the canceled call")
	}
	if _, err := wsrpc.Call[any](context.Background(), cl, "drop", nil); !errors.Is(err, wsrpc.ErrConnectionLost) {
		t.Fatalf("drop: %v, want ErrConnectionLost", err)
	}

	want := map[string]string{"wait": "deadline_exceeded", "wait2": "canceled", "drop": "connection_lost"}
	for method, want := range want {
		sp := cs.ended(t, method, trace.SpanKindClient)
		typ, _ := attr(sp, "error.type")
		_, hasCode := attr(sp, "rpc.response.status_code")
		if sp.Status().Code != codes.Error || typ.AsString() != want || hasCode {
			t.Errorf("%s's span: status %v, error.type %q, a status code %v; want Error, %q, none", method, sp.Status(), typ.AsString(), hasCode, want)
		}
	}
	// A call's duration is recorded just after its span ends.
	missing := func() []string {
		var m []string
		points := cs.histogram(t, "rpc.client.call.duration")
		for method, want := range want {
			p, ok := point(points, method, "") // "": without a status code
			if typ, _ := p.Attributes.Value("error.type"); !ok || typ.AsString() != want || p.Count != 1 {
				m = append(m, method+" with error.type "+want)
			}
		}
		return m
	}
	m := missing()
	for deadline := time.Now().Add(time.Minute); len(m) > 0 && time.Now().Before(deadline); m = missing() { // against a hang
		time.Sleep(5 * time.Millisecond)
	}
	if len(m) > 0 {
		t.Errorf("rpc.client.call.duration has no data point of one call of %v, and no status code", m)
	}
}
