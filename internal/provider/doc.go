// Package provider defines the interface every cluster backend implements and a registry of them.
package provider
