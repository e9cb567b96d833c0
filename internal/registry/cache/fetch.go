package cache

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// upstreamError is an upstream's answer other than success.
type upstreamError struct {
	url    string
	status int
	body   string
}

func (e *upstreamError) Error() string {
	return fmt.Sprintf("upstream %s: %s %s", e.url, http.StatusText(e.status), strings.TrimSpace(e.body))
}

func newUpstreamError(req *http.Request, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return &upstreamError{url: req.URL.Redacted(), status: resp.StatusCode, body: string(b)}
}

// do sends a request to the upstream, authenticated for repo.
func (c *Cache) do(ctx context.Context, up *upstream, repo, method, kind, ref string) (*http.Request, *http.Response, error) {
	t, err := c.transports.get(ctx, up, repo)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(withPlainHost(ctx, up), method, up.url(repo, kind, ref), nil)
	if err != nil {
		return nil, nil, err
	}
	if kind == kindManifests {
		req.Header.Set("Accept", acceptManifests)
	}
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		// Credentials or a token gone stale: authenticate anew next time.
		c.transports.forget(up, repo)
	}
	return req, resp, nil
}

// download fetches content by digest into the store, verifying it, and
// tells d how far it got.
func (c *Cache) download(ctx context.Context, up *upstream, repo, kind, hex string, d *download) error {
	if c.store.has(hex) {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(c.cfg.StallTimeout, func() {
		cancel(fmt.Errorf("nothing received from upstream for %s", c.cfg.StallTimeout))
	})
	defer stall.Stop()
	req, resp, err := c.do(ctx, up, repo, http.MethodGet, kind, "sha256:"+hex)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return newUpstreamError(req, resp)
	}
	d.update(func() { d.size = resp.ContentLength })
	body := &stallReader{r: resp.Body, t: stall, d: c.cfg.StallTimeout}
	if _, _, err := c.store.put(c.counted(body, kind), hex, d); err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			err = cause
		}
		return fmt.Errorf("fetch %s: %w", req.URL.Redacted(), err)
	}
	c.misses.Add(1)
	c.enforceCap(hex)
	return nil
}

// counted adds what is read to the upstream bytes; a manifest is cut off past
// maxManifest (and then fails its digest).
func (c *Cache) counted(r io.Reader, kind string) io.Reader {
	if kind == kindManifests {
		r = io.LimitReader(r, maxManifest+1)
	}
	return &countingReader{r: r, n: &c.upBytes}
}

// stallReader pushes back a stall timer on every read that got something.
type stallReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.t.Reset(s.d)
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n interface{ Add(int64) int64 }
}

func (cr *countingReader) Read(p []byte) (int, error) {
	n, err := cr.r.Read(p)
	cr.n.Add(int64(n))
	return n, err
}

// resolve asks the upstream which manifest a tag names (concurrent calls for
// one tag share one request) and returns its hex digest. When the upstream
// does not say (no Docker-Content-Digest), the manifest is fetched and stored
// under the digest it hashes to.
func (c *Cache) resolve(ctx context.Context, up *upstream, repo, tag string) (string, error) {
	ch := c.flight.DoChan("tag "+tagKey(up.key, repo, tag), func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ResolveTimeout)
		defer cancel()
		return c.resolveUpstream(ctx, up, repo, tag)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return res.Val.(string), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

func (c *Cache) resolveUpstream(ctx context.Context, up *upstream, repo, tag string) (string, error) {
	req, resp, err := c.do(ctx, up, repo, http.MethodHead, kindManifests, tag)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if hex, ok := strings.CutPrefix(resp.Header.Get("Docker-Content-Digest"), "sha256:"); ok && hexDigest.MatchString(hex) {
			return hex, nil
		}
	} else if resp.StatusCode != http.StatusMethodNotAllowed {
		return "", newUpstreamError(req, resp)
	}
	req, resp, err = c.do(ctx, up, repo, http.MethodGet, kindManifests, tag)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", newUpstreamError(req, resp)
	}
	hex, _, err := c.store.put(c.counted(resp.Body, kindManifests), "", nil)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", req.URL.Redacted(), err)
	}
	c.misses.Add(1)
	c.enforceCap(hex)
	return hex, nil
}
