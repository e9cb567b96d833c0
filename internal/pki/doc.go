// Package pki generates the certificate authorities, certificates and keys of a cluster.
package pki
