package portproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"testing"
)

// childEnv makes the test binary a supervisor stand-in (serveChild).
const childEnv = "PORTPROXY_TEST_CHILD"

func TestMain(m *testing.M) {
	if mappings := os.Getenv(childEnv); mappings != "" {
		if err := serveChild(mappings); err != nil {
			fmt.Fprintln(os.Stderr, "ERROR:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// serveChild does what the supervisor does with inherited host ports: it
// serves the Bound mappings (JSON), whose sockets are files 3, 4, …, to
// 127.0.0.1 until its stdin ends.
func serveChild(mappings string) error {
	var ms []Mapping
	if err := json.Unmarshal([]byte(mappings), &ms); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	var p Proxy
	var wg sync.WaitGroup
	errs := make([]error, len(ms))
	for i, m := range ms {
		f := os.NewFile(uintptr(3+i), m.String())
		wg.Go(func() { errs[i] = p.Serve(ctx, m, f, netip.MustParseAddr("127.0.0.1")) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
