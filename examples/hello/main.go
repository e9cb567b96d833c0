// Command hello is the demo and test workload for real nodes: a tiny HTTP
// server and a client for it, in one static binary that
// `ephemera build image` packs into an image.
//
//	hello serve [ADDR]   serve "hello from HOSTNAME" on ADDR (default :8080)
//	hello get URL [FOR]  print the body of URL, retrying for up to FOR (30s; 0: one try)
//	hello download URL   read URL's body once, print its size, the seconds taken and MB/s
//	hello sleep          wait until killed (a pod to exec into)
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: hello serve [ADDR] | get URL [FOR] | download URL | sleep")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		addr := ":8080"
		if len(os.Args) > 2 {
			addr = os.Args[2]
		}
		err = serve(addr)
	case "get":
		if len(os.Args) < 3 {
			err = fmt.Errorf("usage: hello get URL [FOR]")
			break
		}
		wait := 30 * time.Second
		if len(os.Args) > 3 {
			if wait, err = time.ParseDuration(os.Args[3]); err != nil {
				break
			}
		}
		err = get(os.Args[2], wait)
	case "download":
		if len(os.Args) != 3 {
			err = fmt.Errorf("usage: hello download URL")
			break
		}
		err = download(os.Args[2])
	case "sleep":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		<-ctx.Done()
	default:
		err = fmt.Errorf("unknown command %q: want serve, get, download or sleep", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hello:", err)
		os.Exit(1)
	}
}

func serve(addr string) error {
	host, _ := os.Hostname()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("%s %s from %s\n", r.Method, r.URL.Path, r.RemoteAddr)
		fmt.Fprintf(w, "hello from %s\n", host)
	})
	fmt.Printf("listening on %s\n", addr)
	srv := &http.Server{Addr: addr, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func get(url string, wait time.Duration) error {
	// One try (FOR 0) waits longer: it must not fail on a busy host.
	timeout := 15 * time.Second
	if wait > 0 {
		timeout = min(3*time.Second, wait)
	}
	client := &http.Client{Timeout: timeout}
	deadline := time.Now().Add(wait)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == http.StatusOK {
				fmt.Print(string(body))
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
			if rerr != nil {
				err = fmt.Errorf("%s: %s: %w", url, resp.Status, rerr)
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		fmt.Fprintln(os.Stderr, "retrying:", err)
		time.Sleep(500 * time.Millisecond)
	}
}

// download reads url's body once and prints "BYTES bytes in SECONDS s,
// MB/s MB/s", timed from the request to the body's last byte.
func download(url string) error {
	start := time.Now()
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return fmt.Errorf("%s: after %d bytes: %w", url, n, err)
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("%d bytes in %.6f s, %.1f MB/s\n", n, secs, float64(n)/secs/1e6)
	return nil
}
