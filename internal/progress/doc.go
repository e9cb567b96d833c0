// Package progress reports the steps of long operations to a human on stderr.
package progress
