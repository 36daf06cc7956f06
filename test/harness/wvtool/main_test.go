package main

import (
	"bytes"
	"testing"
)

func TestMarkerBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    []byte
		wantErr bool
	}{
		{"hello", []byte("hello"), false},
		{"hex:0a20fafa", []byte{0x0a, 0x20, 0xfa, 0xfa}, false},
		{"hex:zz", nil, true},
		{"", []byte{}, false},
	}
	for _, tt := range tests {
		got, err := markerBytes(tt.in)
		if (err != nil) != tt.wantErr || (!tt.wantErr && !bytes.Equal(got, tt.want)) {
			t.Errorf("markerBytes(%q) = %x, %v", tt.in, got, err)
		}
	}
	if !containsBytes([]byte{1, 2, 3, 4}, []byte{2, 3}) || containsBytes([]byte{1, 2}, []byte{3}) {
		t.Error("containsBytes")
	}
}
