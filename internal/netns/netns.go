// Package netns creates sockets in another network namespace than the
// calling process's: a listener or connection made there belongs to that
// namespace for its whole life and serves from any goroutine.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"

	vnetns "github.com/vishvananda/netns"
)

// Do runs fn on a goroutine of its own, whose OS thread is in the network
// namespace ns for the call, and returns fn's error (a panic in fn panics
// the caller). Sockets fn creates itself (net.Listen, net.ListenPacket,
// net.Dialer.DialContext to an IP address) live in ns, and may be used
// from any goroutine after Do returns. fn must not hand the work to other
// goroutines (they run on other threads, in the process's namespace), nor
// call testing.T's FailNow.
//
// ns stays open: the caller closes it.
func Do(ns vnetns.NsHandle, fn func() error) error {
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		// The thread is only given back to the runtime once it is in its
		// own namespace again; else it ends with this goroutine.
		runtime.LockOSThread()
		origin, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("open this thread's network namespace: %w", err)}
			return
		}
		defer origin.Close()
		if err := vnetns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("enter network namespace %s: %w", ns, err)}
			return
		}
		var r result
		func() {
			defer func() { r.panic = recover() }()
			r.err = fn()
		}()
		if err := vnetns.Set(origin); err != nil {
			r.err = errors.Join(r.err, fmt.Errorf("leave network namespace %s: %w", ns, err))
		} else {
			runtime.UnlockOSThread()
		}
		done <- r
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// Dialer returns a dial function whose connections are made in the network
// namespace ns, as net.Dialer.DialContext makes them; address must be an IP
// address and port (a name would be resolved in the process's namespace).
// ns must stay open while the function is used.
func Dialer(ns vnetns.NsHandle) func(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		var c net.Conn
		err := Do(ns, func() error {
			var err error
			c, err = d.DialContext(ctx, network, address)
			return err
		})
		return c, err
	}
}
