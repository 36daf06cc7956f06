package secure

import (
	"bytes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/hkdf"

	"weavemesh.dev/weave/peer"
	"weavemesh.dev/weave/sleeve/replay"
	"weavemesh.dev/weave/sleeve/wire"
)

// Sizes on the wire.
const (
	// EnvelopeLen is the clear header of a sealed datagram:
	// [version][type 16][reserved 2][receiver index 4][counter 8].
	EnvelopeLen = 16
	TagLen      = 16 // AES-GCM and ChaCha20-Poly1305 tag
	// Overhead is what sealing adds to a datagram.
	Overhead = EnvelopeLen + TagLen

	keyLen   = 32
	tsLen    = 12
	nonceLen = 12
	// Init: header, sender index, Ei, sealed (timestamp, flags).
	InitLen = wire.HeaderLen + 4 + keyLen + tsLen + 1 + TagLen
	// Resp: header, sender index, receiver index, Er, sealed (flags).
	RespLen = wire.HeaderLen + 4 + 4 + keyLen + 1 + TagLen
)

// Session lifetimes.
const (
	RekeyAfterTime      = 2 * time.Minute
	RejectAfterTime     = 3 * time.Minute
	RekeyAfterMessages  = 1 << 48
	RejectAfterMessages = 1 << 60
	// RetryAfter spaces handshake attempts to one peer.
	RetryAfter = time.Second
)

// Handshake flags.
const (
	flagTrust = 0x01 // the sender trusts the receiver's underlay address
)

// Errors, for counting drops by reason.
var (
	ErrAuth      = errors.New("secure: datagram failed authentication")
	ErrReplay    = errors.New("secure: replayed or too old datagram")
	ErrNoSession = errors.New("secure: no session with that index")
	ErrExpired   = errors.New("secure: session expired")
	ErrHandshake = errors.New("secure: bad handshake")
)

// Config configures a Manager.
type Config struct {
	Self    peer.Name      // required
	PSK     [32]byte       // required: from the mesh password
	Trusted []netip.Prefix // optional: underlay subnets whose peers may skip encryption
	Now     func() time.Time
	// Cipher is the session cipher this peer lists first when it
	// initiates (default: AES-256-GCM; ParseCipher picks by the CPU).
	// The responder takes the initiator's first choice, so both sides of
	// a session agree; a peer that lists no cipher gets AES-256-GCM.
	Cipher Cipher
}

// Session is one direction-pair of keys with one neighbour.
type Session struct {
	Peer        peer.Name
	localIndex  uint32
	remoteIndex uint32
	send, recv  cipher.AEAD
	created     time.Time
	initiator   bool
	plain       bool // both sides trust each other: no sealing
	cipher      Cipher
	confirmed   atomic.Bool
	counter     atomic.Uint64
	// wmu guards window: the receive pipelines (one per socket of a
	// group) may open datagrams of one session at the same time.
	wmu    sync.Mutex
	window replay.Filter
}

// Cipher is the AEAD the session seals with.
func (s *Session) Cipher() Cipher { return s.cipher }

// Plain reports whether the two peers agreed to exchange data unencrypted
// (trusted subnets on both sides).
func (s *Session) Plain() bool { return s.plain }

// Seal seals the plaintext at b[EnvelopeLen:EnvelopeLen+n] in place; b must
// have room for the tag after it. It returns the sealed datagram, or false
// when the session may no longer send (the caller rekeys).
func (s *Session) Seal(b []byte, n int) ([]byte, bool) {
	c := s.counter.Add(1) - 1
	if c >= RejectAfterMessages {
		return nil, false
	}
	b[0] = wire.Version
	b[1] = wire.TypeSealed
	b[2], b[3] = 0, 0
	binary.BigEndian.PutUint32(b[4:], s.remoteIndex)
	binary.BigEndian.PutUint64(b[8:], c)
	// The nonce is the receiver index and the counter, as they stand in
	// the envelope: unique under the session key, and no copy to make.
	out := s.send.Seal(b[EnvelopeLen:EnvelopeLen], b[4:EnvelopeLen], b[EnvelopeLen:EnvelopeLen+n], b[:EnvelopeLen])
	return b[:EnvelopeLen+len(out)], true
}

// Manager holds every session of this peer. Safe for concurrent use.
type Manager struct {
	cfg Config
	// coarse is the time the owner last passed to Tick (unix nanos), so
	// the per-datagram paths do not read the clock; zero until then.
	coarse atomic.Int64

	mu      sync.RWMutex // guards byIndex and peers
	byIndex map[uint32]*Session
	peers   map[peer.Name]*peerKeys
}

// peerKeys is the handshake and session state with one neighbour.
type peerKeys struct {
	current  atomic.Pointer[Session] // used to send
	mu       sync.Mutex              // guards the rest
	previous *Session                // the one current replaced (for status and tests)
	next     *Session                // responder side, until the peer uses it
	pending  *initState
	lastTS   [tsLen]byte // newest initiation timestamp accepted from the peer
}

type initState struct {
	index uint32
	priv  *ecdh.PrivateKey
	sent  time.Time
	trust bool
	flags byte // as sent
}

// NewManager validates cfg.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Self == peer.None {
		return nil, errors.New("secure: Config.Self is required")
	}
	if cfg.PSK == [32]byte{} {
		return nil, errors.New("secure: Config.PSK is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Manager{cfg: cfg, byIndex: map[uint32]*Session{}, peers: map[peer.Name]*peerKeys{}}, nil
}

// Tick tells the manager the time; the datagram paths check session ages
// against it instead of reading the clock per datagram. Call it often
// (the engine does, ten times per heartbeat interval).
func (m *Manager) Tick(now time.Time) { m.coarse.Store(now.UnixNano()) }

// clock returns the time of the last Tick, or the real time before any.
func (m *Manager) clock() time.Time {
	if c := m.coarse.Load(); c != 0 {
		return time.Unix(0, c)
	}
	return m.cfg.Now()
}

// Trusted reports whether addr lies in a trusted subnet.
func (m *Manager) Trusted(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range m.cfg.Trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func (m *Manager) keys(p peer.Name) *peerKeys {
	m.mu.RLock()
	k := m.peers[p]
	m.mu.RUnlock()
	if k != nil {
		return k
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if k = m.peers[p]; k == nil {
		k = &peerKeys{}
		m.peers[p] = k
	}
	return k
}

// Current returns the session to send to p with, or nil.
func (m *Manager) Current(p peer.Name) *Session {
	m.mu.RLock()
	k := m.peers[p]
	m.mu.RUnlock()
	if k == nil {
		return nil
	}
	s := k.current.Load()
	if s == nil || m.clock().Sub(s.created) >= RejectAfterTime {
		return nil
	}
	return s
}

// Forget drops every session with p (the peer left the mesh).
func (m *Manager) Forget(p peer.Name) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.peers, p)
	for i, s := range m.byIndex {
		if s.Peer == p {
			delete(m.byIndex, i)
		}
	}
}

// NeedsHandshake reports whether we should initiate with p now: no usable
// session, or one due for rekeying, and no recent attempt.
func (m *Manager) NeedsHandshake(p peer.Name) bool {
	now := m.cfg.Now()
	k := m.keys(p)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pending != nil && now.Sub(k.pending.sent) < RetryAfter {
		return false
	}
	s := k.current.Load()
	return s == nil || now.Sub(s.created) >= RekeyAfterTime || s.counter.Load() >= RekeyAfterMessages
}

func (m *Manager) newIndex(s *Session) uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	for {
		var b [4]byte
		if _, err := io.ReadFull(rand.Reader, b[:]); err != nil {
			panic(fmt.Sprintf("secure: no randomness: %v", err))
		}
		i := binary.BigEndian.Uint32(b[:])
		if _, taken := m.byIndex[i]; !taken && i != 0 {
			if s != nil {
				m.byIndex[i] = s
			}
			return i
		}
	}
}

// Initiate builds a handshake initiation to p into dst (InitLen bytes) and
// remembers its state. trust says whether we trust p's underlay address.
func (m *Manager) Initiate(dst []byte, p peer.Name, trust bool) ([]byte, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("secure: generate key: %w", err)
	}
	idx := m.newIndex(nil)
	b := dst[:InitLen]
	wire.PutHeader(b, &wire.Header{Version: wire.Version, Type: wire.TypeHandshake1, TTL: 1, Src: m.cfg.Self, Dst: p})
	off := wire.HeaderLen
	binary.BigEndian.PutUint32(b[off:], idx)
	pub := priv.PublicKey().Bytes()
	copy(b[off+4:], pub)
	pt := b[off+4+keyLen : off+4+keyLen+tsLen+1]
	now := m.cfg.Now()
	binary.BigEndian.PutUint64(pt[0:], uint64(now.Unix()))
	binary.BigEndian.PutUint32(pt[8:], uint32(now.Nanosecond()))
	flags := offerFlags(m.cfg.Cipher)
	if trust {
		flags |= flagTrust
	}
	pt[tsLen] = flags
	aead := m.aead(m.cfg.PSK[:], pub, "weave handshake 1", m.cfg.Self, p)
	var nonce [nonceLen]byte
	aead.Seal(pt[:0], nonce[:], pt, b[:off+4+keyLen])
	k := m.keys(p)
	k.mu.Lock()
	k.pending = &initState{index: idx, priv: priv, sent: now, trust: trust, flags: flags}
	k.mu.Unlock()
	return b, nil
}

// HandleInit processes an initiation from src and builds the response into
// dst (RespLen bytes). trust says whether we trust src's underlay address.
func (m *Manager) HandleInit(dst, b []byte, src peer.Name, trust bool) ([]byte, error) {
	if len(b) != InitLen {
		return nil, fmt.Errorf("%w: initiation of %d bytes, want %d", ErrHandshake, len(b), InitLen)
	}
	off := wire.HeaderLen
	theirIdx := binary.BigEndian.Uint32(b[off:])
	ei := b[off+4 : off+4+keyLen]
	sealed := b[off+4+keyLen:]
	aead := m.aead(m.cfg.PSK[:], ei, "weave handshake 1", src, m.cfg.Self)
	var nonce [nonceLen]byte
	var ptBuf [tsLen + 1]byte
	pt, err := aead.Open(ptBuf[:0], nonce[:], sealed, b[:off+4+keyLen])
	if err != nil {
		return nil, fmt.Errorf("%w: initiation from %v does not authenticate; does it use the same password?", ErrAuth, src)
	}
	theirPub, err := ecdh.X25519().NewPublicKey(ei)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	k := m.keys(src)
	k.mu.Lock()
	defer k.mu.Unlock()
	if bytes.Compare(pt[:tsLen], k.lastTS[:]) <= 0 {
		return nil, fmt.Errorf("%w: initiation from %v is not newer than the last one", ErrReplay, src)
	}
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("secure: generate key: %w", err)
	}
	dh, err := priv.ECDH(theirPub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	er := priv.PublicKey().Bytes()
	copy(k.lastTS[:], pt[:tsLen])

	c := choose(pt[tsLen])
	s := m.session(dh, ei, er, src, m.cfg.Self, false, c)
	s.remoteIndex = theirIdx
	s.plain = trust && pt[tsLen]&flagTrust != 0
	s.localIndex = m.newIndex(s)
	m.retire(k, k.next)
	k.next = s

	r := dst[:RespLen]
	wire.PutHeader(r, &wire.Header{Version: wire.Version, Type: wire.TypeHandshake2, TTL: 1, Src: m.cfg.Self, Dst: src})
	binary.BigEndian.PutUint32(r[off:], s.localIndex)
	binary.BigEndian.PutUint32(r[off+4:], theirIdx)
	copy(r[off+8:], er)
	rpt := r[off+8+keyLen : off+8+keyLen+1]
	rpt[0] = respFlags(c)
	if trust {
		rpt[0] |= flagTrust
	}
	aead2 := m.aead(append(m.cfg.PSK[:], dh...), append(bytes.Clone(ei), er...), "weave handshake 2", src, m.cfg.Self)
	aead2.Seal(rpt[:0], nonce[:], rpt, r[:off+8+keyLen])
	return r, nil
}

// HandleResp completes our initiation to src.
func (m *Manager) HandleResp(b []byte, src peer.Name) error {
	if len(b) != RespLen {
		return fmt.Errorf("%w: response of %d bytes, want %d", ErrHandshake, len(b), RespLen)
	}
	off := wire.HeaderLen
	theirIdx := binary.BigEndian.Uint32(b[off:])
	ourIdx := binary.BigEndian.Uint32(b[off+4:])
	er := b[off+8 : off+8+keyLen]
	k := m.keys(src)
	k.mu.Lock()
	defer k.mu.Unlock()
	st := k.pending
	if st == nil || st.index != ourIdx {
		return fmt.Errorf("%w: response from %v to no initiation of ours", ErrHandshake, src)
	}
	theirPub, err := ecdh.X25519().NewPublicKey(er)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	dh, err := st.priv.ECDH(theirPub)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	ei := st.priv.PublicKey().Bytes()
	aead2 := m.aead(append(m.cfg.PSK[:], dh...), append(bytes.Clone(ei), er...), "weave handshake 2", m.cfg.Self, src)
	var nonce [nonceLen]byte
	var ptBuf [1]byte
	pt, err := aead2.Open(ptBuf[:0], nonce[:], b[off+8+keyLen:], b[:off+8+keyLen])
	if err != nil {
		return fmt.Errorf("%w: response from %v does not authenticate; does it use the same password?", ErrAuth, src)
	}
	c, err := chosen(pt[0], st.flags)
	if err != nil {
		return err
	}
	s := m.session(dh, ei, er, m.cfg.Self, src, true, c)
	s.localIndex = ourIdx
	s.remoteIndex = theirIdx
	s.plain = st.trust && pt[0]&flagTrust != 0
	s.confirmed.Store(true)
	m.mu.Lock()
	m.byIndex[ourIdx] = s
	m.mu.Unlock()
	k.pending = nil
	m.promote(k, s)
	return nil
}

// promote makes s the sending session. Older sessions stay open for
// receiving until they expire: the peer may still be sending on the one
// paired with them while it learns of s. Caller holds k.mu.
func (m *Manager) promote(k *peerKeys, s *Session) {
	if old := k.current.Swap(s); old != nil && old != s {
		k.previous = old
	}
	if k.next == s {
		k.next = nil
	}
}

// retire forgets s. Caller holds k.mu.
func (m *Manager) retire(k *peerKeys, s *Session) {
	if s == nil {
		return
	}
	m.mu.Lock()
	delete(m.byIndex, s.localIndex)
	m.mu.Unlock()
}

func (m *Manager) session(dh, ei, er []byte, init, resp peer.Name, initiator bool, c Cipher) *Session {
	var info []byte
	info = append(info, "weave session"...)
	info = appendName(info, init)
	info = appendName(info, resp)
	r := hkdf.New(sha256.New, append(bytes.Clone(m.cfg.PSK[:]), dh...), append(bytes.Clone(ei), er...), info)
	var keys [2 * keyLen]byte
	if _, err := io.ReadFull(r, keys[:]); err != nil {
		panic(fmt.Sprintf("secure: hkdf: %v", err))
	}
	ir, ri := newAEAD(c, keys[:keyLen]), newAEAD(c, keys[keyLen:])
	s := &Session{created: m.cfg.Now(), initiator: initiator, cipher: c}
	if initiator {
		s.Peer, s.send, s.recv = resp, ir, ri
	} else {
		s.Peer, s.send, s.recv = init, ri, ir
	}
	return s
}

func (m *Manager) aead(ikm, salt []byte, label string, init, resp peer.Name) cipher.AEAD {
	info := append([]byte(label), make([]byte, 0, 12)...)
	info = appendName(info, init)
	info = appendName(info, resp)
	r := hkdf.New(sha256.New, ikm, salt, info)
	var key [keyLen]byte
	if _, err := io.ReadFull(r, key[:]); err != nil {
		panic(fmt.Sprintf("secure: hkdf: %v", err))
	}
	// The handshake messages are AES-256-GCM whatever the session's
	// cipher: one message each, and a peer that knows only AES-GCM reads
	// them.
	return newAEAD(AESGCM, key[:])
}

func appendName(b []byte, n peer.Name) []byte {
	var x [6]byte
	n.PutBytes(x[:])
	return append(b, x[:]...)
}

// Open authenticates and decrypts a sealed datagram in place, returning the
// session it belongs to and the inner datagram. Safe for concurrent use.
func (m *Manager) Open(b []byte) (*Session, []byte, error) {
	if len(b) < Overhead {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrAuth, len(b))
	}
	idx := binary.BigEndian.Uint32(b[4:])
	m.mu.RLock()
	s := m.byIndex[idx]
	m.mu.RUnlock()
	if s == nil {
		return nil, nil, ErrNoSession
	}
	if m.clock().Sub(s.created) >= RejectAfterTime {
		return nil, nil, ErrExpired
	}
	c := binary.BigEndian.Uint64(b[8:])
	pt, err := s.recv.Open(b[EnvelopeLen:EnvelopeLen], b[4:EnvelopeLen], b[EnvelopeLen:], b[:EnvelopeLen])
	if err != nil {
		return nil, nil, ErrAuth
	}
	s.wmu.Lock()
	fresh := s.window.Accept(c)
	s.wmu.Unlock()
	if !fresh {
		return nil, nil, ErrReplay
	}
	if !s.confirmed.Load() {
		// The initiator used the session: it completed the handshake.
		k := m.keys(s.Peer)
		k.mu.Lock()
		if !s.confirmed.Load() {
			s.confirmed.Store(true)
			m.promote(k, s)
		}
		k.mu.Unlock()
	}
	return s, pt, nil
}

// Expire drops sessions past RejectAfterTime.
func (m *Manager) Expire() {
	now := m.cfg.Now()
	m.mu.Lock()
	var old []*Session
	for i, s := range m.byIndex {
		if now.Sub(s.created) >= RejectAfterTime {
			delete(m.byIndex, i)
			old = append(old, s)
		}
	}
	peers := make(map[peer.Name]*peerKeys, len(m.peers))
	for p, k := range m.peers {
		peers[p] = k
	}
	m.mu.Unlock()
	for _, s := range old {
		if k := peers[s.Peer]; k != nil {
			k.mu.Lock()
			k.current.CompareAndSwap(s, nil)
			if k.previous == s {
				k.previous = nil
			}
			if k.next == s {
				k.next = nil
			}
			k.mu.Unlock()
		}
	}
}

// Plain reports whether the current session with p is unencrypted by
// agreement; false when there is none.
func (m *Manager) Plain(p peer.Name) bool {
	s := m.Current(p)
	return s != nil && s.plain
}
