package netns

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// newNamespace returns a new network namespace with its loopback up,
// closed at the test's end.
func newNamespace(t *testing.T) vnetns.NsHandle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	self, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	var ns vnetns.NsHandle
	// Do leaves the thread in the namespace it found, whatever fn did.
	if err := Do(self, func() error {
		var err error
		ns, err = vnetns.New()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestDoListensInNamespace(t *testing.T) {
	ns := newNamespace(t)
	self, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	if self.Equal(ns) {
		t.Fatal("the new namespace is this thread's")
	}

	var l net.Listener
	if err := Do(ns, func() error {
		in, err := vnetns.Get()
		if err != nil {
			return err
		}
		defer in.Close()
		if !in.Equal(ns) {
			return errors.New("fn does not run in the namespace")
		}
		l, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Served from this goroutine, in the namespace it was made in.
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello from the namespace")
			c.Close()
		}
	}()

	// The process's own loopback has no such listener...
	if c, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Errorf("dialing %s in the process's namespace reached the namespace's listener", l.Addr())
	}
	// ...the namespace's has.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dialer(ns)(ctx, "tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial %s in the namespace: %v", l.Addr(), err)
	}
	b, err := io.ReadAll(c)
	c.Close()
	if string(b) != "hello from the namespace" || err != nil {
		t.Errorf("read %q, %v", b, err)
	}

	// The namespace does not stick to the caller.
	after, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(self) {
		t.Error("the calling thread changed namespace")
	}
}

func TestDoErrorAndPanic(t *testing.T) {
	ns := newNamespace(t)
	want := errors.New("boom")
	if err := Do(ns, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do = %v, want fn's error", err)
	}
	func() {
		defer func() {
			if r := recover(); r != "bang" {
				t.Errorf("recovered %v, want fn's panic", r)
			}
		}()
		_ = Do(ns, func() error { panic("bang") })
	}()
	if err := Do(vnetns.None(), func() error { return nil }); err == nil {
		t.Error("Do in a closed namespace: no error")
	}
}
