package clusterfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// ReservedLabelPrefix is the prefix of the labels ephemera records on
// clusters itself; users cannot set them.
const ReservedLabelPrefix = "ephemera.dev/"

// ParseLabels turns --label KEY=VALUE pairs into the labels of a cluster,
// checking keys and values as the API server would, and refusing the
// labels ephemera records itself (ephemera.dev/...).
func ParseLabels(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	labels := make(map[string]string, len(pairs))
	for _, kv := range pairs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--label %q: want KEY=VALUE, like pr=42", kv)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("--label %q: invalid key %q: %s", kv, k, strings.Join(errs, "; "))
		}
		if strings.HasPrefix(k, ReservedLabelPrefix) {
			return nil, fmt.Errorf("--label %q: keys under %s are ephemera's own", kv, ReservedLabelPrefix)
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("--label %q: invalid value %q: %s", kv, v, strings.Join(errs, "; "))
		}
		if old, dup := labels[k]; dup && old != v {
			return nil, fmt.Errorf("--label %q: key %q given twice, with values %q and %q", kv, k, old, v)
		}
		labels[k] = v
	}
	return labels, nil
}

// Dir returns the directory the relative paths of the file at path are
// relative to: the file's own directory, or the working directory for
// stdin ("-") and no file ("").
func Dir(path string) (string, error) {
	if path == "" || path == "-" {
		return os.Getwd()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return filepath.Dir(abs), nil
}
