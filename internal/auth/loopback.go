package auth

import "net"

// IsLoopback says whether addr's host is a loopback name or address: where a token may
// travel without TLS because nobody else can read the wire, and where a server without
// tokens is reachable only from its own machine.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
