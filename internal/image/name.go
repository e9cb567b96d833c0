package image

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// Normalize returns the full name containerd and the kubelet use for an image
// reference, the way Docker expands it: app:v1 is docker.io/library/app:v1,
// example.com/app is example.com/app:latest.
func Normalize(ref string) (string, error) {
	if _, err := name.ParseReference(ref); err != nil {
		return "", err
	}
	domain, rest := "docker.io", ref
	if i := strings.IndexByte(ref, '/'); i >= 0 {
		first := ref[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
			domain, rest = first, ref[i+1:]
		}
	}
	if domain == "index.docker.io" {
		domain = "docker.io"
	}
	if domain == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if last := rest[strings.LastIndexByte(rest, '/')+1:]; !strings.ContainsAny(last, ":@") {
		rest += ":latest"
	}
	if rest == "" {
		return "", fmt.Errorf("image reference %q has no repository", ref)
	}
	return domain + "/" + rest, nil
}
