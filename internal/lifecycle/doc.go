// Package lifecycle creates, waits for and deletes clusters through any provider; the CLI and the controllers share it.
package lifecycle
