// Package cache is a pull-through cache of OCI registries: an http.Handler serving the read side of the distribution API from a verified, content-addressed store on disk.
package cache
