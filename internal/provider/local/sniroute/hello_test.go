package sniroute

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"
)

func TestServerName(t *testing.T) {
	helloA := clientHello(t, &tls.Config{ServerName: "a.example.test"})
	tests := []struct {
		name     string
		input    []byte
		want     string
		wantErr  bool
		noSNIErr bool // the error is errNoServerName
	}{
		{name: "server name", input: helloA, want: "a.example.test"},
		{name: "upper case", input: clientHello(t, &tls.Config{ServerName: "A.Example.TEST"}), want: "a.example.test"},
		{name: "TLS 1.2 only", input: clientHello(t, &tls.Config{ServerName: "b.example.test", MaxVersion: tls.VersionTLS12}), want: "b.example.test"},
		{name: "no SNI", input: clientHello(t, &tls.Config{InsecureSkipVerify: true}), wantErr: true, noSNIErr: true},
		{name: "IP address, so no SNI", input: clientHello(t, &tls.Config{ServerName: "127.0.0.1"}), wantErr: true, noSNIErr: true},
		{name: "not TLS", input: []byte("GET / HTTP/1.1\r\nHost: a.example.test\r\n\r\n"), wantErr: true},
		{name: "truncated hello", input: helloA[:len(helloA)/2], wantErr: true},
		{name: "nothing", input: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := tcpPair(t)
			go func() {
				_, _ = client.Write(tt.input)
				_ = client.(*net.TCPConn).CloseWrite()
			}()
			_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
			name, hello, err := ServerName(server)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ServerName() error = %v, want error %v", err, tt.wantErr)
			}
			if got := errors.Is(err, errNoServerName); got != tt.noSNIErr {
				t.Errorf("ServerName() error = %v, is errNoServerName %v, want %v", err, got, tt.noSNIErr)
			}
			if name != tt.want {
				t.Errorf("ServerName() name = %q, want %q", name, tt.want)
			}
			// Everything read is returned: the whole hello when there is
			// one, a prefix of the input otherwise.
			if !tt.wantErr || tt.noSNIErr {
				if !bytes.Equal(hello, tt.input) {
					t.Errorf("ServerName() returned %d bytes, want the %d of the hello", len(hello), len(tt.input))
				}
			} else if !bytes.HasPrefix(tt.input, hello) {
				t.Errorf("ServerName() returned %q, not a prefix of the input", hello)
			}
			// ServerName answered nothing: the client reads no byte
			// (no alert) once the server closes.
			_ = server.Close()
			if got, _ := readAll(client); len(got) != 0 {
				t.Errorf("client received %q, want nothing", got)
			}
		})
	}
}

// tcpPair is a connected pair of loopback TCP connections.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return server, client
}
