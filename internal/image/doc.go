// Package image makes and checks container image archives that containerd imports without a registry.
package image
