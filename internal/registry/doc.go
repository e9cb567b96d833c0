// Package registry runs the host's image registry daemon: one pull-through cache and local registry per registry dir, shared by every cluster on the host.
package registry
