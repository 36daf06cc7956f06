// Package secure owns the encryption of the sleeve data plane when the mesh
// has a password: the handshake that gives each pair of neighbouring peers
// fresh session keys, and the sealed envelope every datagram travels in.
//
// Construction (docs/security.md explains it for auditors):
//
//   - psk: 32 bytes derived from the mesh password (package meshkey).
//   - The initiator I picks an ephemeral X25519 key pair (ei, Ei) and sends
//     Ei with a timestamp sealed under k1 = HKDF(psk, salt Ei,
//     "weave handshake 1" | I | R). Only a holder of the password can make
//     or read it; the responder rejects timestamps not newer than the last
//     it accepted from I, so an initiation cannot be replayed.
//   - The responder R picks (er, Er), computes dh = X25519(er, Ei) and
//     answers with Er and its flags sealed under k2 = HKDF(psk | dh,
//     salt Ei | Er, "weave handshake 2" | I | R).
//   - Both derive the session: HKDF(psk | dh, salt Ei | Er,
//     "weave session" | I | R) gives 64 bytes, the I->R key then the
//     R->I key, for AES-256-GCM (as are k1 and k2, with a zero nonce:
//     each is used once).
//
// Each datagram is sealed with the sender's key; the nonce is the
// receiver's session index and a 64-bit counter, and the envelope header is
// the additional data. A sliding window
// (package replay, 8,128 datagrams) rejects replays. Sessions are rekeyed
// after two minutes or 2^48 datagrams and refused after three minutes or
// 2^60, so a nonce never repeats under one key. Keys live only in memory.
//
// Encryption is hop by hop: a relay opens a datagram from one neighbour
// and seals it again for the next.
package secure
