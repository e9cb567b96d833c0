// Package exec runs external commands and keeps their argv and output for error messages.
package exec
