package router

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// endpointsFile keeps the endpoints this router attached, so a restarted
// router re-adopts them (their veths outlive the router process).
const endpointsFile = "endpoints.json"

type endpointRecord struct {
	ID    string   `json:"id"`
	Netns string   `json:"netns"`
	CIDRs []string `json:"cidrs"`
	Name  string   `json:"name,omitempty"`
}

// endpointStore is the on-disk registry of attached endpoints.
type endpointStore struct {
	path string

	mu   sync.Mutex // guards recs and the file
	recs []endpointRecord
}

func loadEndpoints(dataDir string) (*endpointStore, error) {
	s := &endpointStore{path: filepath.Join(dataDir, endpointsFile)}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read endpoints: %w", err)
	}
	if err := json.Unmarshal(data, &s.recs); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v); fix or remove it (attached containers will then need weave attach again)", s.path, err)
	}
	return s, nil
}

func (s *endpointStore) list() []endpointRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.recs)
}

// put adds or replaces the record of r.ID. When the file cannot be
// written the registry is left as it was, in memory too, so that a failed
// attach leaves no trace of the endpoint.
func (s *endpointStore) put(r endpointRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.recs
	s.recs = slices.Clone(s.recs)
	i := slices.IndexFunc(s.recs, func(x endpointRecord) bool { return x.ID == r.ID })
	if i >= 0 {
		s.recs[i] = r
	} else {
		s.recs = append(s.recs, r)
	}
	if err := s.saveLocked(); err != nil {
		s.recs = old
		return err
	}
	return nil
}

// remove drops the record of id. The record goes from memory even when
// the file cannot be written: the endpoint is gone either way, and the next
// successful write catches the file up.
func (s *endpointStore) remove(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = slices.DeleteFunc(s.recs, func(x endpointRecord) bool { return x.ID == id })
	return s.saveLocked()
}

func (s *endpointStore) get(id string) (endpointRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.recs, func(x endpointRecord) bool { return x.ID == id })
	if i < 0 {
		return endpointRecord{}, false
	}
	return s.recs[i], true
}

func (s *endpointStore) byNetns(netns string) (endpointRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.recs, func(x endpointRecord) bool { return x.Netns == netns })
	if i < 0 {
		return endpointRecord{}, false
	}
	return s.recs[i], true
}

func (s *endpointStore) saveLocked() error {
	data, err := json.MarshalIndent(s.recs, "", "  ")
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("save endpoints: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("save endpoints: %w", err)
	}
	return nil
}
