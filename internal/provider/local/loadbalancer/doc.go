// Package loadbalancer gives a cluster's Services of type LoadBalancer addresses from the cluster's address range, the first of which is its ingress address.
package loadbalancer
