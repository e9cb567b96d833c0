package portproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestServeTCPEchoHalfClose(t *testing.T) {
	target := listenTCPTest(t)
	tcpTarget(t, target, echoThenBye)
	front := listenTCPTest(t)
	p := &Proxy{}
	serve(t, func(ctx context.Context) error { return p.ServeTCP(ctx, front, target.Addr().String()) })

	// Several connections at once, each with more than one socket buffer.
	const conns = 4
	errc := make(chan error, conns)
	for i := range conns {
		go func() { errc <- echoOnce(front.Addr().String(), bytes.Repeat([]byte{byte('a' + i)}, 1<<20)) }()
	}
	for range conns {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

// echoOnce sends payload through addr to echoThenBye, half-closes, and
// checks it reads payload and "bye" and then EOF.
func echoOnce(addr string, payload []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if want := append(bytes.Clone(payload), "bye"...); !bytes.Equal(got, want) {
		return fmt.Errorf("read %d bytes ending %q, want %d ending %q", len(got), got[max(0, len(got)-8):], len(want), want[len(want)-8:])
	}
	return nil
}

func TestServeTCPResetWhenTargetRefuses(t *testing.T) {
	target := freePort(t, "tcp4")
	front := listenTCPTest(t)
	p := &Proxy{}
	serve(t, func(ctx context.Context) error { return p.ServeTCP(ctx, front, target) })

	for range 3 {
		// On loopback the reset may come before Dial reads the socket's
		// state, so Dial itself may see it.
		c, err := net.Dial("tcp", front.Addr().String())
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Read(make([]byte, 1))
			_ = c.Close()
		}
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read from a proxy whose target refuses: %v, want %v", err, syscall.ECONNRESET)
		}
	}

	// Serving goes on: once the target listens, connections get through.
	l, err := net.Listen("tcp4", target)
	if err != nil {
		t.Fatal(err)
	}
	tcpTarget(t, l, echoThenBye)
	if err := echoOnce(front.Addr().String(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
}

func TestServeTCPPassesResetOn(t *testing.T) {
	target := listenTCPTest(t)
	tcpTarget(t, target, func(c *net.TCPConn) {
		// Read one byte, then abort.
		if _, err := c.Read(make([]byte, 1)); err == nil {
			_ = c.SetLinger(0)
		}
	})
	front := listenTCPTest(t)
	p := &Proxy{}
	serve(t, func(ctx context.Context) error { return p.ServeTCP(ctx, front, target.Addr().String()) })

	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the target reset: %v, want %v", err, syscall.ECONNRESET)
	}
}

func TestServeTCPStops(t *testing.T) {
	target := listenTCPTest(t)
	tcpTarget(t, target, echoThenBye)
	front := listenTCPTest(t)
	p := &Proxy{}
	stop := serve(t, func(ctx context.Context) error { return p.ServeTCP(ctx, front, target.Addr().String()) })

	// A connection in the middle of its stream when the proxy stops.
	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}

	stop() // checks that ServeTCP returned nil and left no goroutines

	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after the proxy stopped")
	}
	if c, err := net.Dial("tcp", front.Addr().String()); err == nil {
		_ = c.Close()
		t.Error("listener still accepts after the proxy stopped")
	}
}
