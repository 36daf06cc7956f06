// Package mmsg owns the batched datagram system calls, recvmmsg and
// sendmmsg, run through the Go runtime's network poller. Socket users (the
// DNS server, the sleeve's UDP socket) fill in the message headers they
// need; the system-call loop, the EINTR and EAGAIN handling and the
// wrapping of errno live here once. Nothing here allocates per call.
package mmsg
