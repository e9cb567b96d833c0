package sniroute

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestListenSharedPort listens twice on one port, as two clusters'
// supervisors do, and checks that connections reach both listeners.
func TestListenSharedPort(t *testing.T) {
	first := listenLoopback(t, 0)
	port := uint16(first.Addr().(*net.TCPAddr).Port)
	second := listenLoopback(t, port)

	const conns = 64
	var accepted [2]atomic.Int64
	var wg sync.WaitGroup
	for i, ln := range []net.Listener{first, second} {
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted[i].Add(1)
				_ = c.Close()
			}
		})
	}
	for range conns {
		c, err := net.Dial("tcp4", first.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for accepted[0].Load()+accepted[1].Load() < conns && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	_ = first.Close()
	_ = second.Close()
	wg.Wait()
	a, b := accepted[0].Load(), accepted[1].Load()
	if a+b != conns {
		t.Fatalf("accepted %d+%d connections, want %d", a, b, conns)
	}
	// Spread by a hash of the client's address and port: the chance that
	// one listener gets all 64 is 2⁻⁶³.
	if a == 0 || b == 0 {
		t.Errorf("accepted %d and %d connections, want both listeners to accept", a, b)
	}
}

func TestListenErrors(t *testing.T) {
	held, err := net.Listen("tcp4", "127.0.0.1:0") // no SO_REUSEPORT
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := uint16(held.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		name    string
		addr    netip.AddrPort
		want    string
		wantErr error
	}{
		{
			name:    "port held by another program",
			addr:    netipLoopback(heldPort),
			want:    fmt.Sprintf("port %d on 127.0.0.1 is in use by another program: choose another with --advertise-address 127.0.0.1:PORT", heldPort),
			wantErr: syscall.EADDRINUSE,
		},
		{
			// TEST-NET-1 (RFC 5737): on no host.
			name:    "address not on this host",
			addr:    netip.MustParseAddrPort("192.0.2.1:6443"),
			want:    "advertised address 192.0.2.1 is not an address of this host",
			wantErr: syscall.EADDRNOTAVAIL,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Listen(tt.addr)
			if err == nil {
				_ = f.Close()
				t.Fatalf("Listen(%s) succeeded, want an error", tt.addr)
			}
			if err.Error() != tt.want {
				t.Errorf("Listen(%s) error = %q, want %q", tt.addr, err, tt.want)
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Listen(%s) error = %v, want errors.Is %v", tt.addr, err, tt.wantErr)
			}
		})
	}
}

func TestListenErrorIPv6(t *testing.T) {
	e := &ListenError{Addr: netip.MustParseAddrPort("[2001:db8::1]:443"), Err: syscall.EADDRINUSE}
	want := "port 443 on 2001:db8::1 is in use by another program: choose another with --advertise-address [2001:db8::1]:PORT"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
}
