// Package cli builds the ephemera command tree and runs it; Main is the program's only exit code.
package cli
