package pubsub

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/rand/v2"

	"github.com/wsrpc/wsrpc"
)

// newID returns 32 lowercase hex digits, random, in the form of the ids
// FWP makes (uuid4().hex): subscriptions, callback subscribers, nodes.
func newID() string {
	var u [16]byte
	x, y := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		u[i] = byte(x >> (8 * i))
		u[8+i] = byte(y >> (8 * i))
	}
	u[6] = u[6]&0x0f | 0x40 // version 4
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return hex.EncodeToString(u[:])
}

// topicList is FWP's topics argument: a list of strings, or one string on
// its own (as the ALL_TOPICS string is sent).
type topicList []string

func (l *topicList) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*l = topicList{s}
		return nil
	case string(b) == "null":
		*l = nil
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return errors.New("topics must be a string or a list of strings")
	}
	*l = list
	return nil
}

// topicsArgs are the arguments of subscribe and unsubscribe, as a Client
// sends them and a Server decodes them.
type topicsArgs struct {
	Topics topicList `json:"topics"`
}

// publishArgs are the arguments of publish, as a Client sends them and a
// Server decodes them, with FWP's defaults: data null, sync true,
// notifier_id null (the publishing connection).
type publishArgs struct {
	Topics     topicList       `json:"topics"`
	Data       json.RawMessage `json:"data"`
	Sync       *bool           `json:"sync"`
	NotifierID *string         `json:"notifier_id"`
}

// decodeArgs decodes a call's keyword arguments into v, answering bad ones
// with CodeInvalidParams as the core does for typed methods.
func decodeArgs(args json.RawMessage, v any) error {
	if err := json.Unmarshal(args, v); err != nil {
		return wsrpc.Errorf(wsrpc.CodeInvalidParams, "invalid params: %v", err)
	}
	return nil
}

// rawNull is the JSON null.
var rawNull = json.RawMessage("null")

// orNull returns data, or null when it is absent.
func orNull(data json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(data)) == 0 {
		return rawNull
	}
	return data
}

// A notify's keyword arguments are {"subscription": {"id",
// "subscriber_id", "topic", "notifier_id": null}, "data"}, the keys in
// FWP's order, in two parts: notifyHead, the same for every notify of a
// subscription, then notifyTail, the same for every subscriber of an event.

// notifyHead is the start of a subscription's notify arguments, up to its
// topic.
func notifyHead(subID, subscriberID string) []byte {
	b := make([]byte, 0, len(`{"subscription": {"id": "", "subscriber_id": ""`)+len(subID)+len(subscriberID))
	b = append(b, `{"subscription": {"id": "`...)
	b = append(b, subID...)
	b = append(b, `", "subscriber_id": "`...)
	b = append(b, subscriberID...)
	return append(b, '"')
}

// notifyTail is the rest of a notify's arguments after notifyHead: the
// topic (JSON) and the data, the same for every subscriber of an event.
func notifyTail(topic, data []byte) []byte {
	b := make([]byte, 0, len(`, "topic": , "notifier_id": null}, "data": }`)+len(topic)+len(data))
	b = append(b, `, "topic": `...)
	b = append(b, topic...)
	b = append(b, `, "notifier_id": null}, "data": `...)
	b = append(b, data...)
	return append(b, '}')
}

// quote returns s as a JSON string.
func quote(s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

// notifyArgs are the arguments of notify, as a client decodes them.
type notifyArgs struct {
	Subscription struct {
		ID           string  `json:"id"`
		SubscriberID string  `json:"subscriber_id"`
		Topic        string  `json:"topic"`
		NotifierID   *string `json:"notifier_id"`
	} `json:"subscription"`
	Data json.RawMessage `json:"data"`
}

// envelope is the Python broadcaster's message on the broker channel
// EventNotifier: {"notifier_id", "topics", "data"}. notifier_id names the
// node that published it (one id per node, not per connection). A wsrpc
// node may add a "wsrpc" member (brokerMeta), which the Python nodes
// ignore.
type envelope struct {
	NotifierID string          `json:"notifier_id"`
	Topics     []string        `json:"topics"`
	Data       json.RawMessage `json:"data"`
	WSRPC      json.RawMessage `json:"wsrpc"`
	meta       brokerMeta      // WSRPC decoded, if it is one
}

// appendEnvelope appends the broker message for one topic, as pubsub
// publishes it: one message per topic, topics a one-element list. nodeID,
// topic and data are JSON. meta, if not nil, is added last as the "wsrpc"
// member; without it the message is exactly the Python broadcaster's.
func appendEnvelope(b []byte, nodeID, topic, data []byte, meta *brokerMeta) []byte {
	b = append(b, `{"notifier_id": `...)
	b = append(b, nodeID...)
	b = append(b, `, "topics": [`...)
	b = append(b, topic...)
	b = append(b, `], "data": `...)
	b = append(b, data...)
	if meta != nil {
		b = meta.appendMeta(b)
	}
	return append(b, '}')
}

// errBadEnvelope is the error for a broker message that is not an envelope.
var errBadEnvelope = errors.New("pubsub: broker message is not a {notifier_id, topics, data} object")

// decodeEnvelope decodes a broker message. Compact JSON, several topics and
// a missing data (null) are accepted, as the Python broadcaster accepts
// them, and so are other members, which are ignored but for "wsrpc" (a
// "wsrpc" that is not wsrpc's object counts as missing).
func decodeEnvelope(msg []byte) (envelope, error) {
	var e envelope
	if err := json.Unmarshal(msg, &e); err != nil {
		return envelope{}, errors.Join(errBadEnvelope, err)
	}
	e.Data = orNull(e.Data)
	e.meta = decodeMeta(e.WSRPC)
	return e, nil
}
