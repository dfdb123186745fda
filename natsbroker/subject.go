package natsbroker

import (
	"errors"
	"fmt"
	"strings"
)

// ErrChannel: the channel name cannot be a subject (it is empty, or its
// subject is longer than [MaxSubject]).
var ErrChannel = errors.New("natsbroker: channel cannot be a subject")

// MaxSubject is the length in bytes of the longest subject the broker
// sends, its prefix included: a NATS server refuses, and closes the
// connection on, a protocol line longer than its max_control_line (4096
// bytes by default), so a longer one is refused here with [ErrChannel].
const MaxSubject = 1024

// Subject returns the NATS subject of a wsrpc channel, without the
// Options.SubjectPrefix. A NATS subject is made of tokens separated by
// dots, none empty, none "*" or ">", with no whitespace; a channel name may
// be anything. The mapping keeps the ASCII letters, digits, '-' and '_',
// and each dot that separates two non-empty tokens, as they are, and writes
// every other byte as '%' and two upper-case hex digits ("a b" is "a%20b",
// "a..b" is "a.%2Eb", ".x" is "%2Ex", "%" is "%25"). It is one-to-one, so
// two channels never share a subject, and it leaves the channels wsrpc uses
// unchanged ("EventNotifier", "wsrpc.node.0af3…"). An empty channel is
// refused.
func Subject(channel string) (string, error) {
	if channel == "" {
		return "", fmt.Errorf("%w: the channel name is empty", ErrChannel)
	}
	if plain(channel) {
		return channel, nil
	}
	var b strings.Builder
	b.Grow(len(channel) + 8)
	lastDot := true // the subject so far ends a token (or is empty)
	for i := range len(channel) {
		c := channel[i]
		switch {
		case c == '.' && !lastDot && i < len(channel)-1:
			b.WriteByte('.')
			lastDot = true
			continue
		case safe(c):
			b.WriteByte(c)
		default:
			const hex = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		}
		lastDot = false
	}
	return b.String(), nil
}

// plain reports whether a channel is a subject as it is: safe bytes in
// non-empty dot-separated tokens.
func plain(channel string) bool {
	if channel[0] == '.' || channel[len(channel)-1] == '.' {
		return false
	}
	for i := range len(channel) {
		c := channel[i]
		if c == '.' {
			if channel[i-1] == '.' {
				return false
			}
			continue
		}
		if !safe(c) {
			return false
		}
	}
	return true
}

func safe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// validPrefix reports whether p is a subject prefix: empty, or non-empty
// tokens of safe bytes, each followed by a dot.
func validPrefix(p string) bool {
	if p == "" {
		return true
	}
	return strings.HasSuffix(p, ".") && plain(p[:len(p)-1])
}
