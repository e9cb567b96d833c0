// Package cache is a pull-through cache of OCI registries (Cache: the read side of the distribution API from a verified, content-addressed store on disk, and pushes into it with ServePush) and a local registry of the user's own images (Local: the distribution API read and write).
package cache
