package registry

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Every cluster on the host reaches the daemon (through its link), so
// what changes the content other clusters pull (a push into the cache
// for a registry, as `registry import` does) or takes it away (prune)
// needs the token the daemon writes at each start, readable by root
// only. Pulls, the local registry and the status need none: the local
// registry is the host's shared scratch space, as kind's is.

// TokenHeader carries the daemon's token.
const TokenHeader = "X-Ephemera-Token"

// tokenFile is where the running daemon keeps its token, mode 0600.
const tokenFile = "daemon.token"

// writeToken makes a new token for this start of the daemon.
func writeToken(dir string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b)
	path := filepath.Join(dir, tokenFile)
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(tok); err != nil {
		f.Close()
		return "", err
	}
	return tok, f.Close()
}

// readToken returns the running daemon's token, "" when it cannot be read
// (the daemon then refuses what needs it, with a message saying so).
func readToken(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, tokenFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// authorized reports whether r carries token.
func authorized(r *http.Request, token string) bool {
	got := r.Header.Get(TokenHeader)
	return token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}
