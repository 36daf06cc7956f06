package dns

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
)

// ManualFile is the file in the router's data directory that keeps the
// records added by hand (weave dns-add), so they survive a restart.
const ManualFile = "dns.json"

type manualRecord struct {
	Name  string       `json:"name"`
	Addrs []netip.Addr `json:"addrs"`
}

// LoadManual reads records added by hand: canonical name to addresses. A
// missing file is no records.
func LoadManual(path string) (map[string][]netip.Addr, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string][]netip.Addr{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read DNS records: %w", err)
	}
	var recs []manualRecord
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v); fix or remove it (names added with weave dns-add are then lost)", path, err)
	}
	out := map[string][]netip.Addr{}
	for _, r := range recs {
		if !canonical(r.Name) {
			return nil, fmt.Errorf("%s: %q is not a canonical DNS name; fix or remove the file", path, r.Name)
		}
		for _, a := range r.Addrs {
			if !a.IsValid() {
				return nil, fmt.Errorf("%s: name %q has an invalid address; fix or remove the file", path, r.Name)
			}
			out[r.Name] = append(out[r.Name], a.Unmap())
		}
	}
	return out, nil
}

// SaveManual writes records added by hand, atomically.
func SaveManual(path string, m map[string][]netip.Addr) error {
	recs := make([]manualRecord, 0, len(m))
	for n, as := range m {
		if len(as) > 0 {
			recs = append(recs, manualRecord{Name: n, Addrs: as})
		}
	}
	slices.SortFunc(recs, func(a, b manualRecord) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	data, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save DNS records: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("save DNS records: %w", err)
	}
	return nil
}
