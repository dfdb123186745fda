package main

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

// TestNotify: over a real socket, a subscriber's subscribe is answered
// true, a publish from another connection is answered true and reaches the
// subscriber as a notify call in FWP's shape, and the subscriber's answer
// is taken without a reply.
func TestNotify(t *testing.T) {
	defer goleak.VerifyNone(t)
	s := &server{topics: map[string][]*sub{}, queue: 16, batch: 4}
	srv := httptest.NewServer(httpHandler(s))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/pubsub"
	dial := func() *websocket.Conn {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		return ws
	}
	call := func(ws *websocket.Conn, req string) map[string]any {
		t.Helper()
		if err := ws.WriteMessage(websocket.TextMessage, []byte(req)); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	subscriber, publisher := dial(), dial()
	defer subscriber.Close()
	defer publisher.Close()
	r := call(subscriber, `{"request": {"method": "subscribe", "arguments": {"topics": ["t0"]}, "call_id": "a1"}, "response": null}`)
	if resp, _ := r["response"].(map[string]any); resp["result"] != true || resp["call_id"] != "a1" {
		t.Fatalf("subscribe answered %v", r)
	}
	r = call(publisher, `{"request": {"method": "publish", "arguments": {"topics": ["t0"], "data": "hello", "sync": true, "notifier_id": null}, "call_id": "b1"}, "response": null}`)
	if resp, _ := r["response"].(map[string]any); resp["result"] != true || resp["call_id"] != "b1" {
		t.Fatalf("publish answered %v", r)
	}
	var n struct {
		Request struct {
			Method    string `json:"method"`
			Arguments struct {
				Subscription struct {
					Topic string `json:"topic"`
				} `json:"subscription"`
				Data string `json:"data"`
			} `json:"arguments"`
			CallID string `json:"call_id"`
		} `json:"request"`
	}
	_, p, err := subscriber.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(p, &n); err != nil {
		t.Fatalf("notify %q: %v", p, err)
	}
	if n.Request.Method != "notify" || n.Request.Arguments.Subscription.Topic != "t0" || n.Request.Arguments.Data != "hello" || len(n.Request.CallID) != 32 {
		t.Fatalf("notify %q", p)
	}
	answer := `{"request": null, "response": {"result": "None", "result_type": "str", "call_id": "` + n.Request.CallID + `"}}`
	if err := subscriber.WriteMessage(websocket.TextMessage, []byte(answer)); err != nil {
		t.Fatal(err)
	}
	// The answer got no reply: the next frame is the next event's notify.
	call(publisher, `{"request": {"method": "publish", "arguments": {"topics": "t0", "data": 2, "sync": false, "notifier_id": null}, "call_id": "b2"}, "response": null}`)
	if _, p, err = subscriber.ReadMessage(); err != nil || !strings.Contains(string(p), `"data": 2}`) {
		t.Fatalf("second notify %q, %v", p, err)
	}
}
