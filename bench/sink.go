package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// sinkMaxBody caps a request body; it is well above the collection API's
// 500 KB so the sink never refuses what tandem takes.
const sinkMaxBody = 4 << 20

// sink is the simplest durable HTTP sink: it checks that a body is JSON,
// appends it and a newline to one file, and answers 200 only once an fsync
// covering those bytes has returned. One writer goroutine takes every body
// queued while the previous fsync ran, writes them with one write and
// syncs once: group commit.
type sink struct {
	f      *os.File
	syncFn func() error  // f.Sync unless a test wraps it
	reqs   chan *sinkReq // unbuffered: a body is only queued if the writer takes it
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once
	bufs   sync.Pool
}

type sinkReq struct {
	data []byte
	done chan error
}

var errSinkClosed = errors.New("sink closed")

// newSink starts the writer for f, which calls syncFn (nil: f.Sync) to make
// writes durable. Close stops it; the caller closes f.
func newSink(f *os.File, syncFn func() error) *sink {
	if syncFn == nil {
		syncFn = f.Sync
	}
	s := &sink{f: f, syncFn: syncFn, reqs: make(chan *sinkReq), quit: make(chan struct{}), done: make(chan struct{})}
	go s.writer()
	return s
}

func (s *sink) writer() {
	defer close(s.done)
	var buf []byte
	var group []*sinkReq
	for {
		select {
		case <-s.quit:
			return
		case r := <-s.reqs:
			group = append(group[:0], r)
		}
		// Everyone who queued while the last fsync ran joins this one.
	drain:
		for {
			select {
			case r := <-s.reqs:
				group = append(group, r)
			default:
				break drain
			}
		}
		buf = buf[:0]
		for _, r := range group {
			buf = append(buf, r.data...)
		}
		_, err := s.f.Write(buf)
		if err == nil {
			err = s.syncFn()
		}
		for _, r := range group {
			r.done <- err
		}
		clear(group)
	}
}

// append makes data durable, sharing an fsync with concurrent callers.
func (s *sink) append(data []byte) error {
	r := &sinkReq{data: data, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-s.quit:
		return errSinkClosed
	}
	return <-r.done
}

// Close stops the writer once it has finished the group in progress.
// Appends after Close fail.
func (s *sink) Close() error {
	s.once.Do(func() { close(s.quit) })
	<-s.done
	return nil
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/readyz" {
		_, _ = io.WriteString(w, "ok\n")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	buf, _ := s.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	defer s.bufs.Put(buf)
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, sinkMaxBody+1)); err != nil {
		http.Error(w, "could not read body", http.StatusBadRequest)
		return
	}
	if buf.Len() > sinkMaxBody {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	if !json.Valid(buf.Bytes()) {
		http.Error(w, "body is not valid JSON", http.StatusBadRequest)
		return
	}
	buf.WriteByte('\n')
	if err := s.append(buf.Bytes()); err != nil {
		http.Error(w, "not stored: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"success":true}`)
}

const sinkUsage = `Usage: tandem bench sink --addr HOST:PORT --file FILE

The baseline sink of "tandem bench ingest": serves POST on any path,
appends each JSON body as a line to FILE with group-committed fsync, and
answers 200 once the body is on disk. GET /readyz answers 200. Runs until
SIGTERM or SIGINT.

Flags:
`

// sinkMain is `tandem bench sink`.
func sinkMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tandem bench sink", flag.ContinueOnError)
	addr := fs.String("addr", "", "HOST:PORT to listen on (required)")
	file := fs.String("file", "", "file to append bodies to (required)")
	if code, ok := parseFlags(fs, args, sinkUsage, stdout, stderr); !ok {
		return code
	}
	if *addr == "" {
		return usageErr(stderr, fs.Name(), "--addr", "is required")
	}
	if *file == "" {
		return usageErr(stderr, fs.Name(), "--file", "is required")
	}
	defer ChildProfile(os.Getenv, stderr)()
	f, err := os.OpenFile(*file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(stderr, "tandem bench sink: %v\n", err)
		return 1
	}
	defer f.Close()
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "tandem bench sink: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s := newSink(f, nil)
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		s.Close()
		fmt.Fprintf(stderr, "tandem bench sink: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	s.Close()
	if err != nil {
		fmt.Fprintf(stderr, "tandem bench sink: shutdown: %v\n", err)
		return 1
	}
	if err := f.Close(); err != nil {
		fmt.Fprintf(stderr, "tandem bench sink: %v\n", err)
		return 1
	}
	return 0
}
