package portproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// openFiles counts this process's open file descriptors.
func openFiles(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func mustParse(t *testing.T, s string) Mapping {
	t.Helper()
	m, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBindRefuses(t *testing.T) {
	busyTCP := listenTCPTest(t).Addr().(*net.TCPAddr).Port
	busyUDP := listenUDPTest(t, "127.0.0.1:0").LocalAddr().(*net.UDPAddr).Port
	for _, tc := range []struct {
		name    string
		mapping string // bound after "0:80" and "0:53/udp"
		want    string
		is      error
	}{
		{
			name:    "tcp in use",
			mapping: fmt.Sprintf("%d:80", busyTCP),
			want:    fmt.Sprintf("port mapping 127.0.0.1:%d:80/tcp: host port 127.0.0.1:%[1]d is in use", busyTCP),
			is:      syscall.EADDRINUSE,
		},
		{
			name:    "tcp in use on an address 0.0.0.0 includes",
			mapping: fmt.Sprintf("0.0.0.0:%d:80", busyTCP),
			want:    fmt.Sprintf("port mapping 0.0.0.0:%d:80/tcp: host port 0.0.0.0:%[1]d is in use", busyTCP),
			is:      syscall.EADDRINUSE,
		},
		{
			name:    "udp in use",
			mapping: fmt.Sprintf("%d:53/udp", busyUDP),
			want:    fmt.Sprintf("port mapping 127.0.0.1:%d:53/udp: host port 127.0.0.1:%[1]d/udp is in use", busyUDP),
			is:      syscall.EADDRINUSE,
		},
		{
			name:    "not an address of this host",
			mapping: "192.0.2.1:8080:80", // TEST-NET-1
			want:    "port mapping 192.0.2.1:8080:80/tcp: 192.0.2.1 is not an address of this host",
			is:      syscall.EADDRNOTAVAIL,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := openFiles(t)
			bs, err := Bind([]Mapping{mustParse(t, "0:80"), mustParse(t, "0:53/udp"), mustParse(t, tc.mapping)})
			if err == nil {
				for _, b := range bs {
					_ = b.File.Close()
				}
				t.Fatalf("Bind succeeded, want %q", tc.want)
			}
			if err.Error() != tc.want {
				t.Errorf("Bind: %q, want %q", err, tc.want)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("Bind: %v is not %v", err, tc.is)
			}
			var be *BindError
			if !errors.As(err, &be) || be.Mapping != mustParse(t, tc.mapping) {
				t.Errorf("Bind: %#v, want a *BindError for %s", err, tc.mapping)
			}
			if after := openFiles(t); after != before {
				t.Errorf("%d open files after a failed Bind, %d before: it left sockets open", after, before)
			}
		})
	}
	t.Run("duplicates", func(t *testing.T) {
		_, err := Bind([]Mapping{mustParse(t, "8080:80"), mustParse(t, "0.0.0.0:8080:81")})
		const want = "port mappings 127.0.0.1:8080:80/tcp and 0.0.0.0:8080:81/tcp both bind host port"
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Bind: %v, want %q…", err, want)
		}
	})
}

// TestBindHandOver binds host ports, hands them to a child process as the
// creator hands them to the supervisor, and talks through them.
func TestBindHandOver(t *testing.T) {
	tcpTargetL := listenTCPTest(t)
	tcpTarget(t, tcpTargetL, echoThenBye)
	udpTargetPC := listenUDPTest(t, "127.0.0.1:0")
	udpEcho(t, udpTargetPC)
	ms := []Mapping{
		mustParse(t, fmt.Sprintf("0:%d", tcpTargetL.Addr().(*net.TCPAddr).Port)),
		mustParse(t, fmt.Sprintf("127.0.0.1:0:%d/udp", udpTargetPC.LocalAddr().(*net.UDPAddr).Port)),
	}
	bs, err := Bind(ms)
	if err != nil {
		t.Fatal(err)
	}
	bound := make([]Mapping, len(bs))
	files := make([]*os.File, len(bs))
	for i, b := range bs {
		if b.HostPort == 0 {
			t.Errorf("Bind(%s): host port 0, want the port it picked", ms[i])
		}
		if want := ms[i]; b.Address != want.Address || b.Port != want.Port || b.Protocol != want.Protocol {
			t.Errorf("Bind(%s) = %s", want, b.Mapping)
		}
		bound[i], files[i] = b.Mapping, b.File
	}
	plan, err := json.Marshal(bound)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(plan))
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		_ = f.Close()
	}

	tcpFront := netip.AddrPortFrom(bound[0].Address, bound[0].HostPort).String()
	if err := echoOnce(tcpFront, []byte("through the child")); err != nil {
		t.Error(err)
	}
	udpFront := net.UDPAddrFromAddrPort(netip.AddrPortFrom(bound[1].Address, bound[1].HostPort))
	newUDPClient(t, udpFront).ask("through the child", 5*time.Second)

	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	// The child had the only copies of the sockets: the ports are free.
	for _, b := range bound {
		l, err := Bind([]Mapping{b})
		if err != nil {
			t.Errorf("host port still bound after the child ended: %v", err)
			continue
		}
		_ = l[0].File.Close()
	}
}

func TestServeRefusesOtherSocket(t *testing.T) {
	bs, err := Bind([]Mapping{mustParse(t, "0:80"), mustParse(t, "0:53/udp")})
	if err != nil {
		t.Fatal(err)
	}
	tcp, udp := bs[0], bs[1]
	other := tcp.Mapping
	other.HostPort++
	defer udp.File.Close()
	for _, tc := range []struct {
		name string
		m    Mapping
		f    *os.File
		want string
	}{
		{"other port", other, tcp.File, fmt.Sprintf("port mapping %s: inherited socket is bound to 127.0.0.1:%d", other, tcp.HostPort)},
		{"tcp socket for udp", udp.Mapping, tcp.File, "port mapping " + udp.String() + ": inherited socket is not a udp socket"},
		{"udp socket for tcp", tcp.Mapping, udp.File, "port mapping " + tcp.String() + ": inherited socket is not a tcp socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dup, err := dupFile(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			err = (&Proxy{}).Serve(t.Context(), tc.m, dup, netip.MustParseAddr("127.0.0.1"))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Serve: %v, want %q…", err, tc.want)
			}
		})
	}
	_ = tcp.File.Close()
	checkNoGoroutines(t)
}

func dupFile(f *os.File) (*os.File, error) {
	fd, err := syscall.Dup(int(f.Fd()))
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

// TestBindFamiliesApart checks what Check assumes: 0.0.0.0 and :: are
// separate ports, as Bind binds IPv6 addresses for IPv6 only.
func TestBindFamiliesApart(t *testing.T) {
	if l, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 here: %v", err)
	} else {
		_ = l.Close()
	}
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			v4, err := Bind([]Mapping{mustParse(t, "0.0.0.0:0:80/"+proto)})
			if err != nil {
				t.Fatal(err)
			}
			defer v4[0].File.Close()
			v6, err := Bind([]Mapping{mustParse(t, fmt.Sprintf("[::]:%d:80/%s", v4[0].HostPort, proto))})
			if err != nil {
				t.Fatalf("bind :: on the port of 0.0.0.0: %v", err)
			}
			_ = v6[0].File.Close()
		})
	}
}
