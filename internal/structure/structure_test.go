package structure

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const module = "weavemesh.dev/weave/"

// goList runs go list in the module and returns its output.
func goList(t *testing.T, args ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("needs the go command on PATH")
	}
	cmd := exec.Command(goBin, append([]string{"list"}, args...)...)
	cmd.Dir = moduleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}

// Every package says what it owns: a reader, or go doc, starts there.
func TestEveryPackageHasADocComment(t *testing.T) {
	for line := range strings.Lines(goList(t, "-f", "{{.ImportPath}}\t{{.Doc}}", "./...")) {
		path, doc, _ := strings.Cut(strings.TrimSpace(line), "\t")
		if strings.TrimSpace(doc) == "" {
			t.Errorf("%s has no package doc comment saying what it owns", path)
		}
	}
}

// maxLines bounds a non-test source file: past it a file is doing more
// than one job and should be split by responsibility.
const maxLines = 600

// pendingSplit are files known to be over maxLines while their split is
// under way; remove an entry once its file is split.
var pendingSplit = map[string]bool{}

func TestNoSourceFileOverMaxLines(t *testing.T) {
	root := moduleRoot(t)
	out := goList(t, "-f", `{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}`, "./...")
	for line := range strings.Lines(out) {
		path := strings.TrimSpace(line)
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, path)
		n := strings.Count(string(b), "\n")
		switch {
		case n > maxLines && pendingSplit[rel]:
			t.Logf("%s: %d lines, over %d; its split is pending", rel, n, maxLines)
		case n > maxLines:
			t.Errorf("%s: %d lines, over %d: split it by responsibility", rel, n, maxLines)
		}
	}
}

// logKeyRe finds a log call, or a logger's With, that passes one of the
// keys the module does not use: "error" (the key is "err") and "part"
// (the key is "component"). A call's arguments may span lines and hold
// calls themselves, one level deep.
var logKeyRe = regexp.MustCompile(`\.(?:Debug|Info|Warn|Error|Log|With)\((?:[^()]|\([^()]*\))*?"(error|part)",`)

// pendingLogKeys are files known to use an old key while they are being
// rewritten; remove an entry once its file is fixed.
var pendingLogKeys = map[string]bool{}

// One set of log keys: err, component, peer (a peer name; addresses go
// under addr).
func TestLogKeys(t *testing.T) {
	root := moduleRoot(t)
	out := goList(t, "-f", `{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}{{"\n"}}{{end}}`, "./...")
	for line := range strings.Lines(out) {
		path := strings.TrimSpace(line)
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, path)
		for _, m := range logKeyRe.FindAllSubmatchIndex(b, -1) {
			key := string(b[m[2]:m[3]])
			line := 1 + bytes.Count(b[:m[2]], []byte("\n"))
			if pendingLogKeys[rel] {
				t.Logf("%s:%d: log key %q; its fix is pending", rel, line, key)
				continue
			}
			want := map[string]string{"error": "err", "part": "component"}[key]
			t.Errorf("%s:%d: log key %q; use %q", rel, line, key, want)
		}
	}
}
