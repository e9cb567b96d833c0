package sniroute

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
)

var (
	// errStop ends the handshake of the sniffing tls.Server once it has
	// read the ClientHello.
	errStop = errors.New("sniroute: ClientHello read")
	// errNoWrite is what the sniffing tls.Server gets when it tries to
	// answer: nothing reaches the client.
	errNoWrite = errors.New("sniroute: the ClientHello reader writes nothing")
	// errNoServerName is a ClientHello without a server name.
	errNoServerName = errors.New("TLS ClientHello has no server name (SNI)")
)

// ServerName reads the TLS ClientHello from conn without answering it and
// returns the SNI server name, in lower case, and the bytes read, to be
// replayed to the backend: the whole ClientHello and anything the client
// sent after it in the same reads. Error when it is not TLS or has no SNI;
// the bytes read are returned then too. ServerName writes nothing to conn
// and does not close it; the caller bounds the wait with
// conn.SetReadDeadline.
func ServerName(conn net.Conn) (name string, hello []byte, err error) {
	rc := &recordingConn{Conn: conn}
	var seen bool
	cfg := &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			seen = true
			name = h.ServerName
			return nil, errStop
		},
	}
	// crypto/tls parses the hello (records, fragments, extensions) as any
	// server would; its handshake ends in GetConfigForClient. The alert it
	// then sends goes to recordingConn.Write, which drops it.
	err = tls.Server(rc, cfg).Handshake()
	hello = rc.buf.Bytes()
	switch {
	case !seen:
		if err == nil { // cannot happen: GetConfigForClient always fails
			err = errors.New("no ClientHello")
		}
		return "", hello, fmt.Errorf("read TLS ClientHello: %w", err)
	case name == "":
		return "", hello, errNoServerName
	}
	return strings.ToLower(name), hello, nil
}

// recordingConn keeps every byte read from Conn and writes nothing.
type recordingConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.buf.Write(p[:n])
	return n, err
}

func (c *recordingConn) Write([]byte) (int, error) { return 0, errNoWrite }

// Close leaves Conn open: it belongs to the caller of ServerName.
func (c *recordingConn) Close() error { return nil }
