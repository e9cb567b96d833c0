package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// descriptor is what a manifest says of the content it references.
type descriptor struct {
	MediaType string   `json:"mediaType"`
	Digest    string   `json:"digest"`
	URLs      []string `json:"urls"`
}

// manifestRefs is the part of a manifest or index naming other content.
type manifestRefs struct {
	SchemaVersion int          `json:"schemaVersion"`
	Config        *descriptor  `json:"config"`
	Layers        []descriptor `json:"layers"`
	Manifests     []descriptor `json:"manifests"`
}

// putManifest stores a pushed manifest under its digest and, pushed by tag,
// records the tag. A manifest is refused when a reference by digest does not
// match it (DIGEST_INVALID), or when content it references is not stored
// (MANIFEST_BLOB_UNKNOWN: the config, layers, or an index's manifests).
func (s *space) putManifest(w http.ResponseWriter, r *http.Request, repo, ref string) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "MANIFEST_INVALID", err.Error())
		return
	}
	if len(b) > maxManifest {
		writeError(w, http.StatusRequestEntityTooLarge, "MANIFEST_INVALID", fmt.Sprintf("manifest larger than %d bytes", maxManifest))
		return
	}
	sum := sha256.Sum256(b)
	got := hex.EncodeToString(sum[:])
	byDigest := strings.Contains(ref, ":")
	if byDigest {
		want, ok := parseDigest(w, ref)
		if !ok {
			return
		}
		if want != got {
			writeError(w, http.StatusBadRequest, "DIGEST_INVALID", fmt.Sprintf("%s: got sha256:%s: %v", ref, got, ErrDigestMismatch))
			return
		}
	} else if !tagName.MatchString(ref) {
		writeError(w, http.StatusBadRequest, "TAG_INVALID", fmt.Sprintf("invalid tag %q", ref))
		return
	}
	if code, msg := s.checkManifest(b); code != "" {
		writeError(w, http.StatusBadRequest, code, msg)
		return
	}
	if _, _, err := s.store.put(bytes.NewReader(b), got, nil); err != nil {
		writeStoreError(w, err)
		return
	}
	s.blobStored(got)
	if !byDigest {
		if err := s.tags.set(tagKey(s.ns, repo, ref), got, s.now()); err != nil {
			writeError(w, http.StatusInternalServerError, "UNKNOWN", fmt.Sprintf("record tag %s: %v", ref, err))
			return
		}
	}
	h := w.Header()
	h.Set("Location", location(r, "/v2/"+repo+"/manifests/sha256:"+got, nil))
	h.Set("Docker-Content-Digest", "sha256:"+got)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// checkManifest returns an error code and message when b is not a schema 2
// image manifest or index whose references are all stored.
func (s *space) checkManifest(b []byte) (code, msg string) {
	var m manifestRefs
	if err := json.Unmarshal(b, &m); err != nil {
		return "MANIFEST_INVALID", fmt.Sprintf("manifest: %v", err)
	}
	if m.SchemaVersion != 2 {
		return "MANIFEST_INVALID", fmt.Sprintf("manifest schema version %d (2 only)", m.SchemaVersion)
	}
	var need []descriptor
	switch t := manifestType(b); t {
	case typeOCIIndex, typeDockerList:
		need = m.Manifests
	case typeOCIManifest, typeDockerV2:
		if m.Config == nil {
			return "MANIFEST_INVALID", "image manifest without a config"
		}
		need = append(need, *m.Config)
		for _, l := range m.Layers {
			// A foreign (non-distributable) layer is fetched from its URLs,
			// not pushed.
			if len(l.URLs) > 0 && (strings.Contains(l.MediaType, ".foreign.") || strings.Contains(l.MediaType, ".nondistributable.")) {
				continue
			}
			need = append(need, l)
		}
	default:
		return "MANIFEST_INVALID", fmt.Sprintf("unsupported manifest media type %q", t)
	}
	for _, d := range need {
		hex, ok := strings.CutPrefix(d.Digest, "sha256:")
		if !ok || !hexDigest.MatchString(hex) {
			return "MANIFEST_INVALID", fmt.Sprintf("unsupported digest %q (sha256 only)", d.Digest)
		}
		if !s.store.has(hex) {
			return "MANIFEST_BLOB_UNKNOWN", fmt.Sprintf("%s %s is not in the registry", d.MediaType, d.Digest)
		}
	}
	return "", ""
}
