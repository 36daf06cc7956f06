package router

import (
	"weavemesh.dev/weave/sleeve"
	"weavemesh.dev/weave/sleeve/conn"
	"weavemesh.dev/weave/sleeve/tap"
)

// sleeveQueues pairs the TAP queues after the first with the sockets after
// the first: one send and one receive pipeline each.
func sleeveQueues(taps []*tap.Device, udps []*conn.Conn) []sleeve.Queue {
	var qs []sleeve.Queue
	for i := 1; i < len(taps) && i < len(udps); i++ {
		qs = append(qs, sleeve.Queue{Device: taps[i], Conn: udps[i]})
	}
	return qs
}

// pairQueues keeps the first n TAP queues and closes the others, which
// detaches them: the kernel then hands no frame to a queue that no
// pipeline reads.
func pairQueues(taps []*tap.Device, n int) []*tap.Device {
	for _, q := range taps[min(n, len(taps)):] {
		q.Close()
	}
	return taps[:min(n, len(taps))]
}

func closeConns(cs []*conn.Conn) {
	for _, c := range cs {
		c.Close()
	}
}
