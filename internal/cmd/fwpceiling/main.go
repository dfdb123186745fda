// Command fwpceiling is a benchmark reference, not a pub/sub server: the
// least work a server speaking fastapi_websocket_pubsub's protocol can do
// per delivery, to measure what the shared harness's load generator can
// take of that protocol (scripts/bench fanout).
//
// It answers subscribe and publish at once (true), and sends each event to
// the subscribers of its topics as one notify frame, encoded once per
// event and topic and shared by all of them (one call_id per event, which
// the harness does not check), through one writer goroutine per
// subscriber that writes everything queued with one writev, as the
// harness's rawfanout does. The subscribers' answers are read and thrown
// away unparsed. It keeps none of what a real server must: no pending
// calls, no per-subscription ids, no timeouts, no sync, no slow-subscriber
// policy (a full queue makes the publisher wait). It frames and writes on
// its own, beside gorilla, rather than through wsrpc's internal/wsconn, so
// that the reference shares no code with what it is compared with.
//
//	fwpceiling -addr 127.0.0.1:9000   # serves /pubsub
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	queue := flag.Int("queue", 1024, "frames queued per subscriber")
	batch := flag.Int("batch", 64, "frames per write")
	flag.Parse()
	if *queue < 1 || *batch < 1 {
		log.Fatal("fwpceiling: -queue and -batch must be at least 1")
	}
	s := &server{topics: map[string][]*sub{}, queue: *queue, batch: *batch}
	log.Fatal(http.ListenAndServe(*addr, httpHandler(s)))
}

func httpHandler(s *server) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/pubsub", s.serve)
	return mux
}

type server struct {
	mu     sync.RWMutex
	topics map[string][]*sub
	queue  int
	batch  int
	seq    atomic.Uint64
}

// sub is one connection: its writer sends what q holds.
type sub struct {
	nc   net.Conn
	q    chan []byte
	done chan struct{}
}

var upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &sub{nc: ws.NetConn(), q: make(chan []byte, s.queue), done: make(chan struct{})}
	written := make(chan struct{})
	go func() {
		defer close(written)
		c.write(s.batch)
	}()
	var topics []string
	defer func() {
		s.mu.Lock()
		for _, t := range topics {
			l := s.topics[t]
			for i, x := range l {
				if x == c {
					s.topics[t] = append(l[:i:i], l[i+1:]...)
					break
				}
			}
		}
		s.mu.Unlock()
		close(c.done)
		ws.Close()
		<-written
	}()
	var buf bytes.Buffer
	for {
		_, rd, err := ws.NextReader()
		if err != nil {
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(rd); err != nil {
			return
		}
		b := buf.Bytes()
		if bytes.HasPrefix(b, []byte(`{"request": null`)) {
			continue // a notify's answer
		}
		var m struct {
			Request struct {
				Method    string `json:"method"`
				Arguments struct {
					Topics json.RawMessage `json:"topics"`
					Data   json.RawMessage `json:"data"`
				} `json:"arguments"`
				CallID string `json:"call_id"`
			} `json:"request"`
		}
		if json.Unmarshal(b, &m) != nil || m.Request.Method == "" {
			continue // not a request: an answer in another spelling
		}
		var ts []string
		if json.Unmarshal(m.Request.Arguments.Topics, &ts) != nil {
			var one string
			if json.Unmarshal(m.Request.Arguments.Topics, &one) == nil {
				ts = []string{one}
			}
		}
		answer := fmt.Appendf(nil, `{"request": null, "response": {"result": true, "result_type": "bool", "call_id": %q}}`, m.Request.CallID)
		switch m.Request.Method {
		case "subscribe":
			s.mu.Lock()
			for _, t := range ts {
				s.topics[t] = append(s.topics[t], c)
			}
			s.mu.Unlock()
			topics = append(topics, ts...)
			c.send(frame(answer))
		case "publish":
			if len(m.Request.Arguments.Data) == 0 {
				m.Request.Arguments.Data = json.RawMessage("null")
			}
			c.send(frame(answer))
			for _, t := range ts {
				s.publish(t, m.Request.Arguments.Data)
			}
		default:
			c.send(frame(fmt.Appendf(nil, `{"request": null, "response": {"result": null, "result_type": "NoneType", "call_id": %q}}`, m.Request.CallID)))
		}
	}
}

// publish queues one notify frame, shared by every subscriber of topic.
func (s *server) publish(topic string, data json.RawMessage) {
	t := strconv.Quote(topic)
	p := fmt.Appendf(nil, `{"request": {"method": "notify", "arguments": {"subscription": {"id": "%032x", "subscriber_id": "%032x", "topic": %s, "notifier_id": null}, "data": %s}, "call_id": "%032x"}, "response": null}`,
		0, 0, t, data, s.seq.Add(1))
	f := frame(p)
	s.mu.RLock()
	subs := s.topics[topic]
	s.mu.RUnlock()
	for _, c := range subs {
		c.send(f)
	}
}

func (c *sub) send(f []byte) {
	select {
	case c.q <- f:
	case <-c.done:
	}
}

// write sends what is queued, up to batch frames per writev.
func (c *sub) write(batch int) {
	bufs := make(net.Buffers, 0, batch)
	for {
		select {
		case f := <-c.q:
			bufs = append(bufs[:0], f)
		case <-c.done:
			return
		}
	more:
		for len(bufs) < batch {
			select {
			case f := <-c.q:
				bufs = append(bufs, f)
			default:
				break more
			}
		}
		w := bufs // WriteTo consumes its receiver
		if _, err := w.WriteTo(c.nc); err != nil {
			c.nc.Close()
			<-c.done
			return
		}
	}
}

// frame returns p as one unmasked text frame.
func frame(p []byte) []byte {
	var h []byte
	switch n := len(p); {
	case n < 126:
		h = []byte{0x81, byte(n)}
	case n <= 0xffff:
		h = []byte{0x81, 126, 0, 0}
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h = make([]byte, 10)
		h[0], h[1] = 0x81, 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	return append(h, p...)
}
