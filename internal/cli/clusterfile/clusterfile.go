// Package clusterfile reads the ClusterTemplate files that commands take with -f.
package clusterfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// Read reads a ClusterTemplate from path ("-" is stdin). Unknown
// fields, another kind or apiVersion, and malformed YAML are errors that
// name the file.
func Read(path string, stdin io.Reader) (*v1alpha1.ClusterTemplate, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read cluster file: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("cluster file %s: %w", path, err)
	}
	return t, nil
}

// Parse parses a ClusterTemplate, strictly: unknown or duplicate fields,
// another kind or apiVersion, and malformed YAML are errors.
func Parse(data []byte) (*v1alpha1.ClusterTemplate, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("file is empty: want a %s ClusterTemplate", v1alpha1.GroupVersion)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	var t v1alpha1.ClusterTemplate
	strict, err := json.UnmarshalStrict(js, &t, json.DisallowDuplicateFields, json.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("invalid ClusterTemplate: %w", err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("invalid ClusterTemplate: %w (see 'ephemera create cluster --help' for the schema)", errors.Join(strict...))
	}
	if t.APIVersion != v1alpha1.GroupVersion.String() || t.Kind != "ClusterTemplate" {
		return nil, fmt.Errorf("want apiVersion %s and kind ClusterTemplate, got apiVersion %q and kind %q", v1alpha1.GroupVersion, t.APIVersion, t.Kind)
	}
	return &t, nil
}
