package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// newMemberlistLogger returns a *log.Logger, which is what memberlist
// takes, that turns memberlist's "[LEVEL] memberlist: message" lines into
// slog records at the matching level.
func newMemberlistLogger(l *slog.Logger, lim *limiter) *log.Logger {
	return log.New(&slogWriter{log: l, lim: lim}, "", 0)
}

// slogWriter is the io.Writer behind newMemberlistLogger. log.Logger calls
// Write once per line.
type slogWriter struct {
	log *slog.Logger
	lim *limiter // nil: no rate limit
}

func (w *slogWriter) Write(p []byte) (int, error) {
	for line := range bytes.SplitSeq(p, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) != 0 {
			w.line(string(line))
		}
	}
	return len(p), nil
}

func (w *slogWriter) line(s string) {
	level, msg := parseMemberlistLine(s)
	ctx := context.Background()
	if !w.log.Enabled(ctx, level) {
		return
	}
	attrs := []any{"component", "memberlist"}
	if h := hintFor(msg); h != "" {
		attrs = append(attrs, "hint", h)
	}
	// A misconfigured peer makes every member log the same complaint on
	// every probe; one line per kind of complaint and interval is enough.
	if level >= slog.LevelWarn && w.lim != nil {
		ok, suppressed := w.lim.allow(level.String() + limiterKey(msg))
		if !ok {
			return
		}
		if suppressed > 0 {
			attrs = append(attrs, "suppressed", suppressed)
		}
	}
	w.log.Log(ctx, level, msg, attrs...)
}

// parseMemberlistLine splits "[LEVEL] memberlist: message" into a level and
// the message. Lines in another shape are logged whole at Info.
func parseMemberlistLine(s string) (slog.Level, string) {
	s = strings.TrimSpace(s)
	level := slog.LevelInfo
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			switch strings.ToUpper(s[1:end]) {
			case "TRACE", "DEBUG":
				level = slog.LevelDebug
			case "INFO":
				level = slog.LevelInfo
			case "WARN", "WARNING":
				level = slog.LevelWarn
			case "ERR", "ERROR":
				level = slog.LevelError
			}
			s = strings.TrimSpace(s[end+1:])
		}
	}
	s = strings.TrimPrefix(s, "memberlist: ")
	return level, s
}

// hintFor explains the memberlist complaints that come from configuration
// rather than from the network.
func hintFor(msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "decrypt"),
		strings.Contains(m, "remote state is encrypted"),
		strings.Contains(m, "remote state is not encrypted"),
		strings.Contains(m, "encryption is not configured"):
		return "gossip authentication failed; do both hosts use the same password (or both none)?"
	case strings.Contains(m, "unacceptable label"):
		return "mesh name mismatch: peers of meshes with different names (--mesh-name) never merge"
	case strings.Contains(m, "conflicting address"):
		return "two hosts use the same peer name; give each host its own data directory"
	}
	return ""
}

// limiterKey groups messages that differ only in addresses and numbers.
func limiterKey(msg string) string {
	if i := strings.IndexAny(msg, "0123456789"); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 60 {
		msg = msg[:60]
	}
	return msg
}

// limiter allows one event per key per interval and counts the rest.
type limiter struct {
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex // guards keys
	keys map[string]*limitState
}

type limitState struct {
	last       time.Time
	suppressed int
}

// maxLimiterKeys bounds the limiter's memory when keys come from the
// network; when exceeded, stale keys are dropped.
const maxLimiterKeys = 1024

func newLimiter(interval time.Duration) *limiter {
	return &limiter{interval: interval, now: time.Now, keys: make(map[string]*limitState)}
}

// allow reports whether an event for key may be logged now and how many
// were suppressed since the last one allowed.
func (l *limiter) allow(key string) (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st, ok := l.keys[key]
	if !ok {
		if len(l.keys) >= maxLimiterKeys {
			for k, s := range l.keys {
				if now.Sub(s.last) >= l.interval {
					delete(l.keys, k)
				}
			}
			if len(l.keys) >= maxLimiterKeys {
				return false, 0
			}
		}
		l.keys[key] = &limitState{last: now}
		return true, 0
	}
	if now.Sub(st.last) < l.interval {
		st.suppressed++
		return false, 0
	}
	n := st.suppressed
	st.last, st.suppressed = now, 0
	return true, n
}
