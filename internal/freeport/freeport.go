// Package freeport picks loopback TCP ports for servers that must be told a
// port number rather than handed a listener: Temporal's services and
// redis-server.
package freeport

import (
	"fmt"
	"net"
)

// Pick returns a loopback port that nothing listens on and that the kernel
// will not hand out again for about a minute.
//
// Closing a probe listener is not enough on Linux: the port goes straight
// back to the ephemeral pool, and any outgoing connection of a test running
// beside us can take it as its source port before our server binds it — for
// Temporal that is a fatal log and os.Exit(1) with nothing on the terminal.
// So the probe accepts one connection and closes it from the listening side:
// that side's TIME_WAIT keeps the port out of the kernel's automatic
// choices, while an explicit bind with SO_REUSEADDR (which Go and Redis set)
// still succeeds.
func Pick() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr)
	client, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		return 0, fmt.Errorf("reserve port %d: %w", addr.Port, err)
	}
	defer client.Close()
	server, err := l.Accept()
	if err != nil {
		return 0, fmt.Errorf("reserve port %d: %w", addr.Port, err)
	}
	// The listening side closes first: TIME_WAIT lands on our port.
	if err := server.Close(); err != nil {
		return 0, fmt.Errorf("reserve port %d: %w", addr.Port, err)
	}
	return addr.Port, nil
}
