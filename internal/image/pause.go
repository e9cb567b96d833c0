package image

import (
	_ "embed"
	"os"
	"path/filepath"
)

// PauseImageUser is who the pause container runs as: nobody, like upstream's.
const PauseImageUser = "65535:65535"

//go:embed pause/main.go
var pauseSource []byte

// PauseSource returns the Go source of the pause program (pause/main.go):
// the process that holds a pod's namespaces and reaps its zombies.
func PauseSource() []byte { return append([]byte(nil), pauseSource...) }

// WritePauseModule writes a Go module holding the pause program into dir, so
// that `go build` there makes the binary without this repository or any
// download; build it static (CGO_ENABLED=0).
func WritePauseModule(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module ephemera.local/pause\n\ngo 1.26\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "main.go"), pauseSource, 0o644)
}
