package server

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// bigBody is a 2 MB request body, four times the limit.
var bigBody = func() []byte {
	var b bytes.Buffer
	b.WriteString(`{"batch":[`)
	for b.Len() < 2<<20 {
		b.WriteString(`{"type":"track","userId":"u","event":"E","properties":{"pad":"` + strings.Repeat("x", 1000) + `"}},`)
	}
	b.WriteString(`{"type":"track","userId":"u","event":"E"}]}`)
	return b.Bytes()
}()

func readAnswer(t *testing.T, resp *http.Response) response {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// Every client reads its 413 (and other early refusals), never a reset:
// the server answers, then reads the rest of the body before closing.
func TestTooLargeAlwaysAnswered413(t *testing.T) {
	n := startNode(t, "", nil)

	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	for i := 0; i < 100; i++ {
		req, _ := http.NewRequest("POST", n.url+"/v1/batch", bytes.NewReader(bigBody))
		req.SetBasicAuth(n.writeKey, "")
		req.Header.Set("Content-Type", "application/json")
		resp, err := fresh.Do(req)
		if err != nil {
			t.Fatalf("request %d over a fresh connection: %v (want a 413)", i, err)
		}
		checkError(t, readAnswer(t, resp), 413, "too_large", "")
	}

	// Chunked bodies (no Content-Length): the limit is found while reading.
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("POST", n.url+"/v1/batch", io.MultiReader(bytes.NewReader(bigBody)))
		req.SetBasicAuth(n.writeKey, "")
		resp, err := fresh.Do(req)
		if err != nil {
			t.Fatalf("chunked request %d: %v", i, err)
		}
		checkError(t, readAnswer(t, resp), 413, "too_large", "")
	}

	// Other early refusals: a wrong key is refused before the body is read.
	for i := 0; i < 20; i++ {
		req, _ := http.NewRequest("POST", n.url+"/v1/batch", bytes.NewReader(bigBody))
		req.SetBasicAuth("wk_wrong", "")
		resp, err := fresh.Do(req)
		if err != nil {
			t.Fatalf("wrong-key request %d: %v", i, err)
		}
		checkError(t, readAnswer(t, resp), 401, "unauthenticated", "")
	}

	// A keep-alive client: a good request, then the too-large one on the
	// same connection, several times.
	keep := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 30 * time.Second}
	for i := 0; i < 10; i++ {
		ok := n.do("POST", "/v1/track", "basic:"+n.writeKey, []byte(`{"userId":"u","event":"ok"}`), nil)
		if ok.status != 200 {
			t.Fatalf("good request: %d", ok.status)
		}
		req, _ := http.NewRequest("POST", n.url+"/v1/track", bytes.NewReader(bigBody))
		req.SetBasicAuth(n.writeKey, "")
		resp, err := keep.Do(req)
		if err != nil {
			t.Fatalf("keep-alive request %d: %v", i, err)
		}
		if !resp.Close {
			t.Errorf("keep-alive request %d: the answer does not say Connection: close", i)
		}
		checkError(t, readAnswer(t, resp), 413, "too_large", "")
	}

	// The same over one raw connection, as a client that writes the whole
	// body before it reads anything.
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(n.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		small := `{"userId":"u","event":"ok","writeKey":"` + n.writeKey + `"}`
		fmt.Fprintf(c, "POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(small), small)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("first request on the connection: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Fprintf(c, "POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(bigBody))
		if _, err := c.Write(bigBody); err != nil {
			t.Fatalf("raw connection %d: writing the body: %v", i, err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err = http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("raw connection %d: %v (want a 413)", i, err)
		}
		checkError(t, readAnswer(t, resp), 413, "too_large", "")
		c.Close()
	}
}
