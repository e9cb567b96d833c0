package portproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// checkNoGoroutines fails t if a goroutine runs code of this package (not
// of its tests); a goroutine that just finished its work gets a second.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		left = left[:0]
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, f := range []string{"portproxy/proxy.go", "portproxy/tcp.go", "portproxy/udp.go"} {
				if strings.Contains(g, f) {
					left = append(left, g)
					break
				}
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, g := range left {
		t.Errorf("goroutine left behind:\n%s", g)
	}
}

// serve runs serve in a goroutine until the test ends, and returns a stop
// func that ends it, checks it returned nil and left no goroutines.
func serve(t *testing.T, serve func(ctx context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- serve(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("serve did not return 10 s after its context ended")
			}
			checkNoGoroutines(t)
		})
	}
	t.Cleanup(stop)
	return stop
}

// listenTCPTest listens on a free loopback port, closed when the test ends.
func listenTCPTest(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// tcpTarget serves handle for each connection on l until the test ends.
func tcpTarget(t *testing.T, l net.Listener, handle func(c *net.TCPConn)) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { _ = l.Close() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			})
		}
	})
}

// echoThenBye echoes what it reads until EOF, then writes "bye" and closes:
// it writes after the client half-closed.
func echoThenBye(c *net.TCPConn) {
	if _, err := io.Copy(c, c); err != nil {
		return
	}
	_, _ = c.Write([]byte("bye"))
}

// freePort returns a loopback address whose port nothing listens on (now)
// for network (tcp4 or udp4), below the kernel's ephemeral range (32768+ by
// default): a socket the proxy dials, bound to an ephemeral port, cannot
// take the port and connect to itself.
func freePort(t *testing.T, network string) string {
	t.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		var err error
		if network == "tcp4" {
			var l net.Listener
			if l, err = net.Listen(network, addr); err == nil {
				_ = l.Close()
			}
		} else {
			var pc net.PacketConn
			if pc, err = net.ListenPacket(network, addr); err == nil {
				_ = pc.Close()
			}
		}
		if err == nil {
			return addr
		}
	}
	t.Fatalf("no free %s port found", network)
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
