// Package portproxy forwards host ports to a cluster's ingress address: it parses and checks
// --port mappings, binds them in the host network namespace, and serves the inherited sockets
// from inside the cluster's namespace.
package portproxy
