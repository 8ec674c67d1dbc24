package jetstream

import (
	"net/url"
	"strings"
)

// redactURLs returns a NATS server list (URLs separated by commas) fit for
// an error message or a log: a password is replaced by xxxxx, and so is a
// user name given without a password (NATS reads that as a token).
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		u, err := url.Parse(p)
		if err != nil {
			// Unparseable: show only what cannot be a secret.
			if at := strings.LastIndex(p, "@"); at >= 0 {
				p = "xxxxx" + p[at:]
			}
			parts[i] = p
			continue
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			} else {
				u.User = url.User("xxxxx")
			}
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
