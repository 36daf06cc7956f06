package conn

import (
	"bytes"
	"fmt"
	"testing"
)

// TestGroupSteering sends from each socket of one group to a second group
// and checks that every datagram of sending socket i arrives, in order, at
// one receiving socket, a different one for each sender.
func TestGroupSteering(t *testing.T) {
	enterNewNS(t)
	for _, n := range []int{2, 3, 4} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			a := group(t, n)
			b := group(t, n)
			dst := b[0].LocalAddr()
			for i, c := range b {
				if c.LocalAddr() != dst {
					t.Fatalf("socket %d on %v, want %v", i, c.LocalAddr(), dst)
				}
			}
			const per = 20
			for i, c := range a {
				out := make([]OutPacket, per)
				for k := range out {
					out[k] = OutPacket{Bufs: [][]byte{{byte(i), byte(k)}}, Addr: dst}
				}
				if err := c.WriteBatch(out); err != nil {
					t.Fatalf("socket %d: WriteBatch: %v", i, err)
				}
			}
			owner := map[int]int{} // sender -> receiving socket
			for r, c := range b {
				// Each socket receives one sender's datagrams, 2 bytes each.
				got := recvBytes(t, c, 2*per)
				for k, d := range got {
					s := int(d.data[0])
					if !bytes.Equal(d.data, []byte{byte(s), byte(k)}) {
						t.Fatalf("socket %d: datagram %d is %v; want sender %d's in order", r, k, d.data, s)
					}
					if d.addr != a[s].SendAddr() {
						t.Fatalf("datagram from %v, want %v", d.addr, a[s].SendAddr())
					}
					if o, ok := owner[s]; ok && o != r {
						t.Fatalf("sender %d reached sockets %d and %d", s, o, r)
					}
					owner[s] = r
				}
			}
			if len(owner) != n {
				t.Fatalf("senders reached %v, want all %d", owner, n)
			}
		})
	}
}

// A port in use, by a plain socket or by another group, is refused: two
// routers never share a data port.
func TestGroupPortInUse(t *testing.T) {
	enterNewNS(t)
	plain := listen(t, Options{})
	if cs, err := ListenGroup(Options{Addr: plain.LocalAddr()}, 2); err == nil {
		closeAll(cs)
		t.Fatal("a group took a port a plain socket holds")
	}
	g := group(t, 2)
	for _, n := range []int{1, 2} {
		if cs, err := ListenGroup(Options{Addr: g[0].LocalAddr()}, n); err == nil {
			closeAll(cs)
			t.Fatalf("a group of %d took a port another group holds", n)
		}
	}
}

func closeAll(cs []*Conn) {
	for _, c := range cs {
		c.Close()
	}
}

func group(t *testing.T, n int) []*Conn {
	t.Helper()
	cs, err := ListenGroup(Options{Addr: loopback, Logger: testLogger(t)}, n)
	if err != nil {
		t.Fatalf("ListenGroup(%d): %v", n, err)
	}
	t.Cleanup(func() {
		for _, c := range cs {
			c.Close()
		}
	})
	return cs
}
