package sniroute

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkRequest is an HTTPS request to a backend through the router
// next to one straight to it, on loopback: on a connection kept alive (as
// client-go keeps them: the router costs a copy each way) and on a new
// connection each time (the router also reads the ClientHello, looks the
// name up and dials).
//
//	go test -run '^$' -bench BenchmarkRequest ./internal/provider/local/sniroute/
func BenchmarkRequest(b *testing.B) {
	be := newBackend(b, "a", "a.example.test")
	rt := &routes{table: map[string]string{"a.example.test": be.addr()}}
	routed := startRouter(b, rt.router())
	for _, c := range []struct {
		name       string
		addr       string
		keepAlives bool
	}{
		{"direct/kept-alive", be.addr(), true},
		{"router/kept-alive", routed, true},
		{"direct/new-connection", be.addr(), false},
		{"router/new-connection", routed, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			tr := &http.Transport{
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, c.addr)
				},
				TLSClientConfig:   &tls.Config{RootCAs: be.ca.pool, ServerName: "a.example.test"},
				DisableKeepAlives: !c.keepAlives,
			}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			for b.Loop() {
				resp, err := client.Get("https://cluster.invalid/")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
