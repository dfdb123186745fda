package pgbroker

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"unicode/utf8"
)

// The sizes of the largest messages a Broker carries. A NOTIFY payload is
// text shorter than 8000 bytes (PostgreSQL's NOTIFY_PAYLOAD_MAX_LENGTH with
// the default 8 kB block size), without NUL bytes and valid in the
// database's encoding. A message that can go as it is (see [MaxMessage])
// is sent unchanged; any other is sent as the byte 0x01 followed by its
// base64 encoding (without padding), which fits fewer bytes. Publish
// refuses a larger message with an error wrapping
// wsrpc.ErrBrokerMessageTooLarge, before sending anything.
const (
	// MaxMessage is the limit, in bytes, for a message that is valid
	// UTF-8, holds no NUL byte and does not begin with the byte 0x01
	// (JSON, such as pubsub's events, always qualifies); in a database
	// whose encoding is neither UTF8 nor SQL_ASCII, the message must
	// also be ASCII.
	MaxMessage = maxPayload
	// MaxBinaryMessage is the limit, in bytes, for any other message.
	MaxBinaryMessage = (maxPayload - 1) * 3 / 4
)

const (
	// maxPayload is the longest NOTIFY payload: PostgreSQL refuses one of
	// 8000 bytes or more ("payload string too long").
	maxPayload = 7999
	// maxIdentifier is the longest PostgreSQL identifier (NAMEDATALEN-1):
	// pg_notify refuses a longer channel name, and LISTEN cuts it.
	maxIdentifier = 63
	// binaryTag begins a payload that carries a message in base64.
	binaryTag = 0x01
)

// ChannelName returns the PostgreSQL channel on which a Broker publishes
// and listens for channel. That is channel itself when it is a valid
// channel name for NOTIFY and LISTEN: 1 to 63 bytes of UTF-8, without a
// NUL byte. Any other (longer, empty, or not UTF-8) is mapped to a name
// of at most 63 bytes: its first bytes (up to 30, cut at a character
// boundary) followed by "#" and 32 hexadecimal digits of its SHA-256
// hash. The mapping is the same on every node, so nodes agree on it, and
// two channels map to one name only if one was chosen to look like the
// other's mapped name. Case matters: channels "Orders" and "orders" are
// distinct, as LISTEN's quoted identifier keeps the case.
//
// A program that is not a Broker, such as a psql session or a trigger,
// reaches a Broker's subscribers with NOTIFY on ChannelName(channel), and
// hears its publications with LISTEN on it (a quoted identifier).
func ChannelName(channel string) string {
	if validName(channel) {
		return channel
	}
	sum := sha256.Sum256([]byte(channel))
	prefix := channel[:min(len(channel), 30)]
	for !validName(prefix) && prefix != "" {
		prefix = prefix[:len(prefix)-1]
	}
	return prefix + "#" + hex.EncodeToString(sum[:16])
}

// validName reports whether name can be a PostgreSQL channel as it is.
func validName(name string) bool {
	return name != "" && len(name) <= maxIdentifier && utf8.ValidString(name) &&
		!bytes.Contains([]byte(name), []byte{0})
}

// encodePayload returns the NOTIFY payload carrying msg; ascii says that
// the database's encoding takes only ASCII text unchanged. It returns
// false if msg is too large.
func encodePayload(msg []byte, ascii bool) (payload string, ok bool) {
	if asText(msg, ascii) {
		return string(msg), len(msg) <= MaxMessage
	}
	if len(msg) > MaxBinaryMessage {
		return "", false
	}
	b := make([]byte, 1+base64.RawStdEncoding.EncodedLen(len(msg)))
	b[0] = binaryTag
	base64.RawStdEncoding.Encode(b[1:], msg)
	return string(b), true
}

// asText reports whether msg goes as it is in a NOTIFY payload.
func asText(msg []byte, ascii bool) bool {
	if len(msg) > 0 && msg[0] == binaryTag || bytes.IndexByte(msg, 0) >= 0 {
		return false
	}
	if ascii {
		for _, c := range msg {
			if c >= utf8.RuneSelf {
				return false
			}
		}
		return true
	}
	return utf8.Valid(msg)
}

// decodePayload returns the message a NOTIFY payload carries. A payload
// that begins with 0x01 but is not valid base64 after it, which no Broker
// sends, is taken as it is.
func decodePayload(payload string) []byte {
	if len(payload) > 0 && payload[0] == binaryTag {
		if msg, err := base64.RawStdEncoding.DecodeString(payload[1:]); err == nil {
			return msg
		}
	}
	return []byte(payload)
}
