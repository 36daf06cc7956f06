// Package conn owns the sleeve datapath's UDP socket: batched receive and
// send (recvmmsg/sendmmsg), UDP generic segmentation offload on send
// (UDP_SEGMENT) and generic receive offload on receive (UDP_GRO), socket
// buffer sizing and the count of datagrams the buffer overflowed
// (SO_RXQ_OVFL), path-MTU signalling (the socket sets DF, so an oversized
// datagram fails with EMSGSIZE instead of being fragmented), and groups of
// sockets on one port that receive in parallel, steered by source port
// (ListenGroup: SO_REUSEPORT and a classic BPF program).
//
// The underlay is IPv4 only: Listen takes an IPv4 address and every
// destination must be IPv4.
//
// The batch calls run recvmmsg and sendmmsg on preallocated message arrays
// through internal/mmsg, shared with the DNS server, rather than
// golang.org/x/net/ipv4.PacketConn: that
// package converts every source address into a freshly allocated
// *net.UDPAddr, and the datapath must not allocate per packet.
package conn
