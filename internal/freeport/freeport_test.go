package freeport

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

func TestAPickedPortIsHeldInTimeWaitYetCanBeBound(t *testing.T) {
	port, err := Pick()
	if err != nil {
		t.Fatal(err)
	}
	if !timeWait(t, port) {
		t.Fatalf("port %d has no TIME_WAIT socket on its side: the kernel may hand it to the next outgoing connection", port)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("listen on the picked port: %v", err)
	}
	l.Close()
}

// timeWait reports whether /proc/net/tcp holds a TIME_WAIT socket whose
// local port is port.
func timeWait(t *testing.T, port int) bool {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	s := bufio.NewScanner(f)
	for s.Scan() {
		// sl local_address rem_address st ...; TIME_WAIT is 06.
		fields := strings.Fields(s.Text())
		if len(fields) > 3 && strings.HasSuffix(fields[1], want) && fields[3] == "06" {
			return true
		}
	}
	return false
}
