// Package sniroute routes TLS connections by the server name of their
// ClientHello (SNI) to per-cluster backends, passing TLS through untouched.
package sniroute
