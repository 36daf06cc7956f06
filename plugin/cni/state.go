package cni

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The state is one file per attachment, named CONTAINERID_IFNAME in the
// data dir and holding the namespace path: DEL finds the namespace when
// the runtime no longer gives it, GC lists what it may remove.

func attachmentFile(dir, containerID, ifname string) (string, error) {
	for _, s := range []string{containerID, ifname} {
		if s == "" || strings.ContainsAny(s, "/\x00") || s == "." || s == ".." {
			return "", fmt.Errorf("container id %q, interface %q: want non-empty names without '/'", containerID, ifname)
		}
	}
	return filepath.Join(dir, containerID+"_"+ifname), nil
}

func saveAttachment(dir, containerID, ifname, netns string) error {
	path, err := attachmentFile(dir, containerID, ifname)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("weave-net data dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(netns), 0o600); err != nil {
		return fmt.Errorf("record attachment: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("record attachment: %w", err)
	}
	return nil
}

// loadAttachment returns the recorded namespace, "" when none.
func loadAttachment(dir, containerID, ifname string) (string, error) {
	path, err := attachmentFile(dir, containerID, ifname)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read attachment record: %w", err)
	}
	return string(b), nil
}

func removeAttachment(dir, containerID, ifname string) error {
	path, err := attachmentFile(dir, containerID, ifname)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove attachment record: %w", err)
	}
	return nil
}

// attachment is one record: container id, interface and namespace.
type attachment struct{ containerID, ifname, netns string }

func listAttachments(dir string) ([]attachment, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list attachments: %w", err)
	}
	var out []attachment
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			continue
		}
		// Container ids may hold '_'; interface names rarely do.
		i := strings.LastIndexByte(name, '_')
		if i <= 0 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		out = append(out, attachment{containerID: name[:i], ifname: name[i+1:], netns: string(b)})
	}
	return out, nil
}
