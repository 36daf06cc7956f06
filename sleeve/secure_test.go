package sleeve

import (
	"bytes"
	"testing"
	"time"

	"weavemesh.dev/weave/sleeve/conn"
	"weavemesh.dev/weave/sleeve/wire"
)

func TestEncryptedMesh(t *testing.T) {
	m := newTestMeshPSK(t, true, []byte{9, 9, 9})
	m.waitFor("links up", m.allUp)
	a, b, c := m.nodes[0], m.nodes[1], m.nodes[2]
	if !a.e.Encrypted(b.name) {
		t.Fatal("link not encrypted")
	}
	wireB := m.net.Capture(b.addr)

	a.dev.In <- ethFrame(bcast, mac(1), 0x0806, []byte("secret-broadcast"))
	expectFrame(t, b.dev, "broadcast", hasPayload([]byte("secret-broadcast")))
	expectFrame(t, c.dev, "broadcast", hasPayload([]byte("secret-broadcast")))

	payload := bytes.Repeat([]byte("MARKER-"), 9000)
	f := tcpSuperFrame(mac(2), mac(1), payload, 1300)
	b.dev.In <- ethFrame(mac(1), mac(2), 0x0800, []byte("learn"))
	expectFrame(t, a.dev, "learning frame", hasPayload([]byte("learn")))
	a.dev.In <- f
	// One sealed datagram per segment, 49 of them in two GSO trains; the
	// receiver's GRO puts the super-frame back together (in one piece if
	// both trains come in one read).
	got, frames := tcpPayloads(t, b.dev, len(payload))
	if !bytes.Equal(got, payload) || len(frames) > 2 || len(frames) == 1 && !bytes.Equal(frames[0], f) {
		t.Fatalf("super-frame changed: %d frames", len(frames))
	}

	// Nothing on the wire shows the plaintext.
	var captured [][]byte
	for len(wireB) > 0 {
		d := <-wireB
		if bytes.Contains(d, []byte("MARKER")) || bytes.Contains(d, []byte("secret-broadcast")) {
			t.Fatal("plaintext on the wire")
		}
		captured = append(captured, d)
	}
	if len(captured) == 0 {
		t.Fatal("nothing captured")
	}

	// Replayed and tampered datagrams are dropped and counted.
	var sealed []byte
	for _, d := range captured {
		if len(d) > 100 && d[1] == wire.TypeSealed {
			sealed = d
		}
	}
	if sealed == nil {
		t.Fatal("no sealed data datagram captured")
	}
	inject := func(d []byte) { m.net.Deliver(b.addr, conn.Packet{Buf: d, Addr: a.addr}) }
	inject(bytes.Clone(sealed))
	m.waitFor("replay counted", func() bool { return b.e.Drops()["replay"] >= 1 })
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)/2] ^= 1
	inject(flipped)
	m.waitFor("tamper counted", func() bool { return b.e.Drops()["auth_failed"] >= 1 })
	noFrame(t, b.dev, "replayed frame delivered", 100*time.Millisecond, hasPayload([]byte("MARKER-")))
}

func TestWrongPasswordNeverConnects(t *testing.T) {
	m := newTestMeshPSK(t, false, []byte{9, 9, 8})
	m.waitFor("good pair up", func() bool { return m.linkState(0, 1) == LinkUp && m.linkState(1, 0) == LinkUp })
	m.waitFor("stranger down", func() bool { return m.linkState(0, 2) == LinkDown && m.linkState(2, 0) == LinkDown })
	m.nodes[2].dev.In <- ethFrame(bcast, mac(3), 0x0806, []byte("intruder"))
	noFrame(t, m.nodes[0].dev, "frame from the stranger", 200*time.Millisecond, hasPayload([]byte("intruder")))
	if m.nodes[0].e.Drops()["bad_handshake"] == 0 {
		t.Fatal("bad handshakes not counted")
	}
}

func TestPlainFromUntrustedDropped(t *testing.T) {
	m := newTestMeshPSK(t, false, []byte{9, 0})
	m.waitFor("unencrypted counted", func() bool { return m.nodes[0].e.Drops()["unencrypted"] > 0 })
	if m.linkState(0, 1) == LinkUp {
		t.Fatal("link up between encrypted and plain peers")
	}
}
