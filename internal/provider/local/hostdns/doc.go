// Package hostdns is a cluster's DNS forwarder: it runs in the host's
// network namespace on the host end of the cluster's link, answers the names
// it is given (the cluster's ingress names) itself and forwards every other
// query to the host's resolvers, which may be loopback resolvers that the
// cluster could not reach.
package hostdns
