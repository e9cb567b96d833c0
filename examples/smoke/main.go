// Command smoke is an example test runner image for TestRuns: a static Go
// program that checks the cluster it is given and writes JUnit XML, the
// way a real suite (go test with gotestsum, Ginkgo, pytest) would.
//
// It uses what ephemera gives every test process: KUBECONFIG, and
// EPHEMERA_KUBERNETES_VERSION and EPHEMERA_ARTIFACTS in its environment.
//
//	smoke [--fail] [--sleep DURATION] [--resolve NAME]... [--unreachable HOST:PORT]...
//
// Tests: the API answers; the server's version is EPHEMERA_KUBERNETES_VERSION;
// a ConfigMap can be written and read back. --fail adds a failing test,
// --sleep waits first (to try timeouts), --resolve adds a test that NAME
// resolves, --unreachable one that fails when HOST:PORT accepts a TCP
// connection (to check what the runner must not reach). It exits 1 when a
// test failed.
//
// Build and load it for a server's TestRuns:
//
//	CGO_ENABLED=0 go build -o smoke ./examples/smoke
//	ephemera build image --from-binary smoke --tag example.com/smoke:v1 -o smoke.tar
//	ephemera load image smoke.tar --server
package main

import (
	"context"
	"encoding/xml"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type testCase struct {
	Name    string   `xml:"name,attr"`
	Time    string   `xml:"time,attr"`
	Failure *failure `xml:"failure,omitempty"`
}

type failure struct {
	Message string `xml:"message,attr"`
}

type testSuite struct {
	XMLName  xml.Name   `xml:"testsuite"`
	Name     string     `xml:"name,attr"`
	Tests    int        `xml:"tests,attr"`
	Failures int        `xml:"failures,attr"`
	Cases    []testCase `xml:"testcase"`
}

func main() {
	fail := flag.Bool("fail", false, "add a test that fails")
	sleep := flag.Duration("sleep", 0, "wait this long before testing")
	var resolve, unreachable []string
	flag.Func("resolve", "a name that must resolve (repeatable)", func(s string) error {
		resolve = append(resolve, s)
		return nil
	})
	flag.Func("unreachable", "HOST:PORT that must not accept a TCP connection (repeatable)", func(s string) error {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return err
		}
		unreachable = append(unreachable, s)
		return nil
	})
	flag.Parse()
	if *sleep > 0 {
		fmt.Printf("sleeping %s\n", *sleep)
		time.Sleep(*sleep)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	suite := testSuite{Name: "smoke"}
	run := func(name string, test func() error) {
		start := time.Now()
		err := test()
		c := testCase{Name: name, Time: fmt.Sprintf("%.3f", time.Since(start).Seconds())}
		if err != nil {
			c.Failure = &failure{Message: err.Error()}
			suite.Failures++
			fmt.Printf("--- FAIL: %s: %v\n", name, err)
		} else {
			fmt.Printf("--- PASS: %s\n", name)
		}
		suite.Tests++
		suite.Cases = append(suite.Cases, c)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	var kube kubernetes.Interface
	if err == nil {
		kube, err = kubernetes.NewForConfig(cfg)
	}
	run("TestAPIAnswers", func() error {
		if err != nil {
			return err
		}
		nodes, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		fmt.Printf("the cluster has %d nodes\n", len(nodes.Items))
		return nil
	})
	run("TestVersion", func() error {
		if kube == nil {
			return fmt.Errorf("no client")
		}
		v, err := kube.Discovery().ServerVersion()
		if err != nil {
			return err
		}
		if want := os.Getenv("EPHEMERA_KUBERNETES_VERSION"); v.GitVersion != want {
			return fmt.Errorf("server is %s, EPHEMERA_KUBERNETES_VERSION says %q", v.GitVersion, want)
		}
		fmt.Printf("server version %s\n", v.GitVersion)
		return nil
	})
	run("TestConfigMapRoundTrip", func() error {
		if kube == nil {
			return fmt.Errorf("no client")
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "smoke-"}, Data: map[string]string{"k": "v"}}
		made, err := kube.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		got, err := kube.CoreV1().ConfigMaps("default").Get(ctx, made.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Data["k"] != "v" {
			return fmt.Errorf("read back %v", got.Data)
		}
		return nil
	})
	if len(resolve) > 0 {
		run("TestResolve", func() error {
			for _, name := range resolve {
				addrs, err := net.DefaultResolver.LookupHost(ctx, name)
				if err != nil {
					return err
				}
				fmt.Printf("%s is %v\n", name, addrs)
			}
			return nil
		})
	}
	if len(unreachable) > 0 {
		run("TestUnreachable", func() error {
			var reached []string
			for _, addr := range unreachable {
				conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					fmt.Printf("cannot reach %s: %v\n", addr, err)
					continue
				}
				conn.Close()
				reached = append(reached, addr)
			}
			if len(reached) > 0 {
				return fmt.Errorf("reached %v", reached)
			}
			return nil
		})
	}
	if *fail {
		run("TestMeantToFail", func() error { return fmt.Errorf("asked to fail (--fail)") })
	}

	if dir := os.Getenv("EPHEMERA_ARTIFACTS"); dir != "" {
		out, err := xml.MarshalIndent(suite, "", "  ")
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "junit.xml"), append([]byte(xml.Header), out...), 0o644)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "write JUnit: %v\n", err)
			os.Exit(2)
		}
	}
	fmt.Printf("%d tests, %d failed\n", suite.Tests, suite.Failures)
	if suite.Failures > 0 {
		os.Exit(1)
	}
}
