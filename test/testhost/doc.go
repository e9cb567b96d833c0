// Package testhost is the outside world of network tests: hosts in network
// namespaces that the test creates, joined to the host by a veth pair,
// with HTTP and DNS servers that record who asked them. Tests send traffic
// only to these and to loopback. Everything needs root.
package testhost
