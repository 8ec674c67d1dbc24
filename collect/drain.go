package collect

import (
	"io"
	"net/http"
	"strings"
	"time"

	"tandem/apierror"
)

// Bounds on reading the rest of a refused request's body.
const (
	drainBytes = 8 << 20
	drainTime  = 5 * time.Second
)

// trackedBody remembers whether its body was read to the end.
type trackedBody struct {
	io.ReadCloser
	eof bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// refuse writes the error answer e. When the request's body was not read
// to its end (a refusal before reading it, or a body over the limit), the
// answer says Connection: close and goes out first; then the rest of the
// body is read and thrown away, up to drainBytes and drainTime, so that
// the connection is not closed under a client that is still sending:
// closing with unread data makes the kernel reset the connection, and the
// client would see the reset instead of the answer.
func refuse(w http.ResponseWriter, r *http.Request, body *trackedBody, e *apierror.Error) int {
	if body == nil || body.eof || r.ContentLength == 0 {
		apierror.Write(w, e)
		return e.Status
	}
	w.Header().Set("Connection", "close")
	if strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		// The client waits for our word before sending: it will not send.
		apierror.Write(w, e)
		return e.Status
	}
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // read the body after answering
	apierror.Write(w, e)
	_ = rc.Flush()
	_ = rc.SetReadDeadline(time.Now().Add(drainTime))
	_, _ = io.CopyN(io.Discard, body, drainBytes)
	return e.Status
}
