package portproxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// udpEcho answers each datagram on pc with "SOURCE DATAGRAM" until the test
// ends, SOURCE being the address the datagram came from.
func udpEcho(t *testing.T, pc net.PacketConn) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = pc.Close()
		<-done
	})
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(from.String()+" "+string(buf[:n])), from)
		}
	}()
}

func listenUDPTest(t *testing.T, addr string) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// udpClient is a client socket talking to the proxy at front.
type udpClient struct {
	t     *testing.T
	pc    net.PacketConn
	front net.Addr
}

func newUDPClient(t *testing.T, front net.Addr) *udpClient {
	return &udpClient{t: t, pc: listenUDPTest(t, "127.0.0.1:0"), front: front}
}

// ask sends msg to the proxy and returns the target's reply: the source it
// saw, and the message echoed. It fails the test if no reply comes from the
// proxy's address within wait.
func (c *udpClient) ask(msg string, wait time.Duration) (source string) {
	c.t.Helper()
	source, ok := c.tryAsk(msg, wait)
	if !ok {
		c.t.Fatalf("no reply to %q within %v", msg, wait)
	}
	return source
}

func (c *udpClient) tryAsk(msg string, wait time.Duration) (source string, ok bool) {
	c.t.Helper()
	if _, err := c.pc.WriteTo([]byte(msg), c.front); err != nil {
		c.t.Fatal(err)
	}
	_ = c.pc.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, maxDatagram)
	n, from, err := c.pc.ReadFrom(buf)
	if isTimeout(err) {
		return "", false
	}
	if err != nil {
		c.t.Fatal(err)
	}
	if from.String() != c.front.String() {
		c.t.Errorf("reply from %s, want it from the proxy at %s", from, c.front)
	}
	source, echoed, _ := strings.Cut(string(buf[:n]), " ")
	if echoed != msg {
		c.t.Errorf("reply %q, want %q echoed", buf[:n], msg)
	}
	return source, true
}

func waitSessions(t *testing.T, p *Proxy, want int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.udpSessions.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d UDP sessions, want %d", p.udpSessions.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeUDPTwoClients(t *testing.T) {
	target := listenUDPTest(t, "127.0.0.1:0")
	udpEcho(t, target)
	front := listenUDPTest(t, "127.0.0.1:0")
	p := &Proxy{UDPIdleTimeout: 500 * time.Millisecond}
	stop := serve(t, func(ctx context.Context) error { return p.ServeUDP(ctx, front, target.LocalAddr().String()) })

	a, b := newUDPClient(t, front.LocalAddr()), newUDPClient(t, front.LocalAddr())
	a1 := a.ask("a1", 5*time.Second)
	b1 := b.ask("b1", 5*time.Second)
	a2 := a.ask("a2", 5*time.Second)
	if a1 == b1 {
		t.Errorf("clients a and b reach the target from one address %s, want one session each", a1)
	}
	if a1 != a2 {
		t.Errorf("client a reaches the target from %s, then %s: want one session", a1, a2)
	}
	if n := p.udpSessions.Load(); n != 2 {
		t.Errorf("%d UDP sessions, want 2", n)
	}

	// Idle sessions end; a client's next datagram opens a new one.
	waitSessions(t, p, 0)
	if a3 := a.ask("a3", 5*time.Second); a3 == a1 {
		t.Errorf("client a reaches the target from %s after its session ended, as before", a3)
	}
	stop()
	if _, ok := a.tryAsk("late", 200*time.Millisecond); ok {
		t.Error("proxy answers after it stopped")
	}
}

func TestServeUDPMaxSessions(t *testing.T) {
	target := listenUDPTest(t, "127.0.0.1:0")
	udpEcho(t, target)
	front := listenUDPTest(t, "127.0.0.1:0")
	p := &Proxy{UDPMaxSessions: 1, UDPIdleTimeout: 500 * time.Millisecond}
	serve(t, func(ctx context.Context) error { return p.ServeUDP(ctx, front, target.LocalAddr().String()) })

	a, b := newUDPClient(t, front.LocalAddr()), newUDPClient(t, front.LocalAddr())
	a.ask("a1", 5*time.Second)
	if _, ok := b.tryAsk("b1", 100*time.Millisecond); ok {
		t.Error("a second client got an answer beyond UDPMaxSessions 1")
	}
	// Once a's session ended, b gets one.
	waitSessions(t, p, 0)
	b.ask("b2", 5*time.Second)
}

func TestServeUDPTargetLate(t *testing.T) {
	targetAddr := freePort(t, "udp4")
	front := listenUDPTest(t, "127.0.0.1:0")
	p := &Proxy{}
	serve(t, func(ctx context.Context) error { return p.ServeUDP(ctx, front, targetAddr) })

	a := newUDPClient(t, front.LocalAddr())
	// Nothing listens: the datagrams are refused (ICMP) and lost.
	for _, msg := range []string{"a1", "a2"} {
		if _, ok := a.tryAsk(msg, 100*time.Millisecond); ok {
			t.Fatal("reply from a target that does not listen")
		}
	}
	// The session outlives the refusals: once the target listens, it answers.
	udpEcho(t, listenUDPTest(t, targetAddr))
	a.ask("a3", 5*time.Second)
	if n := p.udpSessions.Load(); n != 1 {
		t.Errorf("%d UDP sessions, want 1", n)
	}
}
