package gossip

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a slog.Handler that keeps records for tests to inspect.
type recorder struct {
	mu    sync.Mutex // guards lines
	lines []string
	attrs []slog.Attr // from WithAttrs; shared by clones
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rec.Level, rec.Message)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}
func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorderView{r: r, attrs: as}
}
func (r *recorder) WithGroup(string) slog.Handler { return r }

// recorderView is a recorder with extra attributes.
type recorderView struct {
	r     *recorder
	attrs []slog.Attr
}

func (v *recorderView) Enabled(ctx context.Context, l slog.Level) bool { return true }
func (v *recorderView) Handle(ctx context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(v.attrs...)
	return v.r.Handle(ctx, rec)
}
func (v *recorderView) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorderView{r: v.r, attrs: append(append([]slog.Attr{}, v.attrs...), as...)}
}
func (v *recorderView) WithGroup(string) slog.Handler { return v }

// find returns the first line containing every part.
func (r *recorder) find(parts ...string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		ok := true
		for _, p := range parts {
			if !strings.Contains(l, p) {
				ok = false
				break
			}
		}
		if ok {
			return l, true
		}
	}
	return "", false
}

func (r *recorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

func TestParseMemberlistLine(t *testing.T) {
	tests := []struct {
		in    string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4:5", slog.LevelDebug, "Stream connection from=1.2.3.4:5"},
		{"[INFO] memberlist: Marking x as failed", slog.LevelInfo, "Marking x as failed"},
		{"[WARN] memberlist: Refuting a suspect message", slog.LevelWarn, "Refuting a suspect message"},
		{"[ERR] memberlist: failed to receive: x", slog.LevelError, "failed to receive: x"},
		{"[ERROR] memberlist: Failed to encrypt", slog.LevelError, "Failed to encrypt"},
		{"[ERR] Failed to shutdown transport: x\n", slog.LevelError, "Failed to shutdown transport: x"},
		{"no level at all", slog.LevelInfo, "no level at all"},
		{"[ODD] memberlist: x", slog.LevelInfo, "x"},
	}
	for _, tt := range tests {
		level, msg := parseMemberlistLine(tt.in)
		if level != tt.level || msg != tt.msg {
			t.Errorf("%q: got %v %q, want %v %q", tt.in, level, msg, tt.level, tt.msg)
		}
	}
}

func TestMemberlistLoggerToSlog(t *testing.T) {
	rec := &recorder{}
	lim := newLimiter(time.Hour)
	l := newMemberlistLogger(slog.New(rec), lim)
	l.Printf("[DEBUG] memberlist: hello %d", 1)
	l.Printf("[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=10.0.0.1:7946")
	l.Printf("[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=10.0.0.2:7946")
	l.Printf("[ERR] memberlist: discarding stream with unacceptable label \"x\": from=10.0.0.1:1")
	if _, ok := rec.find("DEBUG hello 1", "component=memberlist"); !ok {
		t.Errorf("debug line missing:\n%s", rec.all())
	}
	if _, ok := rec.find("ERROR failed to receive", "same password"); !ok {
		t.Errorf("decrypt error lacks its hint:\n%s", rec.all())
	}
	if _, ok := rec.find("10.0.0.2"); ok {
		t.Errorf("repeated error was not rate-limited:\n%s", rec.all())
	}
	if _, ok := rec.find("unacceptable label", "hint=mesh name mismatch"); !ok {
		t.Errorf("label error lacks its hint:\n%s", rec.all())
	}
}

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newLimiter(10 * time.Second)
	l.now = func() time.Time { return now }
	if ok, _ := l.allow("a"); !ok {
		t.Fatal("first event refused")
	}
	for range 3 {
		if ok, _ := l.allow("a"); ok {
			t.Fatal("event within interval allowed")
		}
	}
	if ok, _ := l.allow("b"); !ok {
		t.Fatal("other key refused")
	}
	now = now.Add(10 * time.Second)
	if ok, n := l.allow("a"); !ok || n != 3 {
		t.Fatalf("after interval: %v, %d suppressed; want true, 3", ok, n)
	}
	// The key table stays bounded.
	for i := range 2 * maxLimiterKeys {
		l.allow(fmt.Sprint(i))
	}
	if len(l.keys) > maxLimiterKeys {
		t.Fatalf("%d keys kept", len(l.keys))
	}
}
