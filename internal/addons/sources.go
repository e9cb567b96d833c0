package addons

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"

	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	chartloader "helm.sh/helm/v4/pkg/chart/v2/loader"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/ephemera-dev/ephemera/api/v1alpha1"
)

// Sources resolves what a phase names. In-job (ServerMode false), paths are files, directories or
// http(s) URLs, relative paths relative to Dir. In server mode, paths are refused (charts come from
// OCI or repositories, manifests from ConfigMaps and Secrets), and configMapRef, secretRef and
// valuesFrom are read with Reader in Namespace.
type Sources struct {
	// Dir is the base directory of relative paths (in-job); empty means the working directory.
	Dir string
	// ServerMode refuses paths (manifest paths, chart directories and archives, values files).
	ServerMode bool
	// Reader reads ConfigMaps and Secrets (server mode).
	Reader client.Reader
	// Namespace is where ConfigMaps and Secrets are read (server mode).
	Namespace string
	// HTTPClient fetches manifest URLs; nil means http.DefaultClient.
	HTTPClient *http.Client
	// PlainHTTP are the OCI registries (HOST:PORT) charts are pulled from
	// over plain HTTP: the template's network.insecureRegistries. The
	// host's local registry (localhost, loopback) always is.
	PlainHTTP []string
}

// document is one source text: a file, a URL's body, a ConfigMap key, an inline string.
type document struct {
	name string // for errors: the path, URL, "configmap ns/name key" or "inline"
	text string
}

// maxDocument bounds what a URL, file or key may hold.
const maxDocument = 16 << 20

func isURL(p string) bool {
	return strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://")
}

func (s Sources) path(p string) string {
	if filepath.IsAbs(p) || s.Dir == "" {
		return p
	}
	return filepath.Join(s.Dir, p)
}

// manifestDocuments reads what a ManifestSource names. The name returned describes the source.
func (s Sources) manifestDocuments(ctx context.Context, m v1alpha1.ManifestSource) (string, []document, error) {
	set := 0
	for _, b := range []bool{m.Path != "", m.Inline != "", m.ConfigMapRef != nil, m.SecretRef != nil} {
		if b {
			set++
		}
	}
	if set != 1 {
		return "manifest", nil, errors.New("exactly one of path, inline, configMapRef and secretRef must be set")
	}
	switch {
	case m.Inline != "":
		return "inline manifest", []document{{name: "inline", text: m.Inline}}, nil
	case m.ConfigMapRef != nil:
		name := "configMap " + m.ConfigMapRef.Name
		docs, err := s.objectData(ctx, &corev1.ConfigMap{}, *m.ConfigMapRef)
		return name, docs, err
	case m.SecretRef != nil:
		name := "secret " + m.SecretRef.Name
		docs, err := s.objectData(ctx, &corev1.Secret{}, *m.SecretRef)
		return name, docs, err
	}
	name := "manifest " + m.Path
	if s.ServerMode {
		return name, nil, errors.New("paths are refused by a server: use a configMapRef or secretRef")
	}
	if isURL(m.Path) {
		text, err := s.fetch(ctx, m.Path)
		return name, []document{{name: m.Path, text: text}}, err
	}
	p := s.path(m.Path)
	fi, err := os.Stat(p)
	if err != nil {
		return name, nil, err
	}
	if !fi.IsDir() {
		text, err := readFile(p)
		return name, []document{{name: m.Path, text: text}}, err
	}
	entries, err := os.ReadDir(p)
	if err != nil {
		return name, nil, err
	}
	var docs []document
	for _, e := range entries { // ReadDir sorts by name
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml" && ext != ".json") {
			continue
		}
		text, err := readFile(filepath.Join(p, e.Name()))
		if err != nil {
			return name, nil, err
		}
		docs = append(docs, document{name: filepath.Join(m.Path, e.Name()), text: text})
	}
	if len(docs) == 0 {
		return name, nil, errors.New("directory has no .yaml, .yml or .json file")
	}
	return name, docs, nil
}

func readFile(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if fi.Size() > maxDocument {
		return "", fmt.Errorf("%s: larger than %d bytes", p, maxDocument)
	}
	b, err := os.ReadFile(p)
	return string(b), err
}

func (s Sources) fetch(ctx context.Context, url string) (string, error) {
	c := s.HTTPClient
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("get %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return "", fmt.Errorf("get %s: %w", url, err)
	}
	if len(b) > maxDocument {
		return "", fmt.Errorf("get %s: larger than %d bytes", url, maxDocument)
	}
	return string(b), nil
}

// objectData reads a ConfigMap's or Secret's key, or all its keys in name order.
func (s Sources) objectData(ctx context.Context, obj client.Object, ref v1alpha1.KeyReference) ([]document, error) {
	if s.Reader == nil {
		return nil, errors.New("configMapRef, secretRef and valuesFrom are read by a server only")
	}
	if err := s.Reader.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: ref.Name}, obj); err != nil {
		return nil, err
	}
	data := map[string]string{}
	switch o := obj.(type) {
	case *corev1.ConfigMap:
		for k, v := range o.Data {
			data[k] = v
		}
		for k, v := range o.BinaryData {
			data[k] = string(v)
		}
	case *corev1.Secret:
		for k, v := range o.Data {
			data[k] = string(v)
		}
		for k, v := range o.StringData {
			data[k] = v
		}
	}
	prefix := s.Namespace + "/" + ref.Name
	if ref.Key != "" {
		v, ok := data[ref.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q", prefix, ref.Key)
		}
		return []document{{name: prefix + " key " + ref.Key, text: v}}, nil
	}
	var docs []document
	for _, k := range slices.Sorted(maps.Keys(data)) {
		docs = append(docs, document{name: prefix + " key " + k, text: data[k]})
	}
	return docs, nil
}

// decodeObjects parses YAML or JSON documents into objects; empty documents are skipped.
func decodeObjects(d document) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(d.text)), 4096)
	var objs []*unstructured.Unstructured
	for i := 1; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("%s: document %d: %w", d.name, i, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("%s: document %d: apiVersion, kind and metadata.name are required", d.name, i)
		}
		objs = append(objs, u)
	}
}

// values reads a chart's values: valuesFiles, then valuesFrom, then values, each merged over the
// ones before.
func (s Sources) values(ctx context.Context, c v1alpha1.ChartSource) (map[string]any, error) {
	var docs []document
	for _, f := range c.ValuesFiles {
		if s.ServerMode {
			return nil, fmt.Errorf("valuesFiles %s: paths are refused by a server: use valuesFrom", f)
		}
		text, err := readFile(s.path(f))
		if err != nil {
			return nil, fmt.Errorf("valuesFiles: %w", err)
		}
		docs = append(docs, document{name: f, text: text})
	}
	for _, ref := range c.ValuesFrom {
		var d []document
		var err error
		switch {
		case ref.ConfigMapKeyRef != nil && ref.SecretKeyRef == nil:
			d, err = s.objectData(ctx, &corev1.ConfigMap{}, *ref.ConfigMapKeyRef)
		case ref.SecretKeyRef != nil && ref.ConfigMapKeyRef == nil:
			d, err = s.objectData(ctx, &corev1.Secret{}, *ref.SecretKeyRef)
		default:
			err = errors.New("exactly one of configMapKeyRef and secretKeyRef must be set")
		}
		if err != nil {
			return nil, fmt.Errorf("valuesFrom: %w", err)
		}
		docs = append(docs, d...)
	}
	if c.Values != nil && len(c.Values.Raw) > 0 {
		docs = append(docs, document{name: "values", text: string(c.Values.Raw)})
	}
	vals := map[string]any{}
	for _, d := range docs {
		var v map[string]any
		if err := yaml.Unmarshal([]byte(d.text), &v); err != nil {
			return nil, fmt.Errorf("%s: %w", d.name, err)
		}
		vals = chartloader.MergeMaps(vals, v)
	}
	return vals, nil
}

// chartIsRemote says whether a chart is fetched (oci://, a repository) rather than read from disk.
func chartIsRemote(c v1alpha1.ChartSource) bool {
	return c.Repo != "" || strings.HasPrefix(c.Chart, "oci://")
}

// localChart loads a chart directory or archive.
func (s Sources) localChart(c v1alpha1.ChartSource) (*chartv2.Chart, error) {
	if s.ServerMode {
		return nil, errors.New("chart paths are refused by a server: use an oci:// reference or a repo")
	}
	ch, err := chartloader.Load(s.path(c.Chart))
	if err != nil {
		return nil, err
	}
	if c.Version != "" && ch.Metadata.Version != strings.TrimPrefix(c.Version, "v") && ch.Metadata.Version != c.Version {
		return nil, fmt.Errorf("chart %s has version %s, not %s", c.Chart, ch.Metadata.Version, c.Version)
	}
	return ch, nil
}
