package conn

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// RcvbufErrors returns the UDP RcvbufErrors counter (datagrams dropped
// because a socket's receive buffer was full) of the calling thread's
// network namespace. A caller that entered another namespace must hold its
// OS thread locked.
func RcvbufErrors() (uint64, error) {
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		var err2 error
		if b, err2 = os.ReadFile("/proc/net/snmp"); err2 != nil {
			return 0, fmt.Errorf("conn: read UDP counters: %w", err)
		}
	}
	v, err := snmpCounter(b, "Udp", "RcvbufErrors")
	if err != nil {
		return 0, fmt.Errorf("conn: %w", err)
	}
	return v, nil
}

// snmpCounter finds a counter in /proc/net/snmp text, where each protocol
// has a line of names followed by a line of values, both prefixed "Proto:".
func snmpCounter(b []byte, proto, name string) (uint64, error) {
	prefix := []byte(proto + ":")
	var names [][]byte
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		fields := bytes.Fields(rest)
		if names == nil {
			names = fields
			continue
		}
		for i, n := range names {
			if string(n) == name {
				if i >= len(fields) {
					break
				}
				v, err := strconv.ParseUint(string(fields[i]), 10, 64)
				if err != nil {
					return 0, fmt.Errorf("snmp %s %s: %w", proto, name, err)
				}
				return v, nil
			}
		}
		return 0, fmt.Errorf("snmp: no %s %s counter", proto, name)
	}
	return 0, fmt.Errorf("snmp: no %s counters", proto)
}
