// Package access holds tandem's users, their roles and their API tokens, and
// the table of what each role may do ([Can]).
//
// A user is created with a role and receives a bearer token once; the store
// keeps only the token's SHA-256 hash, so a leaked database does not leak
// usable tokens. [Store.Authenticate] turns a presented token back into its
// user.
//
// The [Store] keeps its tables in a [statestore.DB]; apply [Migrations]
// with [statestore.DB.Migrate] before use.
package access

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"tandem/statestore"
)

// ErrUnauthenticated is returned by [Store.Authenticate] for a missing or
// unknown token. The API answers 401.
var ErrUnauthenticated = errors.New("access: unauthenticated")

// FieldError is the input error naming the offending JSON field (an alias
// of [statestore.FieldError], shared by all concept packages).
type FieldError = statestore.FieldError

// TokenPrefix starts every token [Store.CreateUser] issues, so that a token
// is recognisable in a configuration file or a secret scanner.
const TokenPrefix = "tdm_"

// Limits on user input.
const (
	MaxNameLen  = 200  // characters of a user name
	MaxTokenLen = 1024 // bytes of a token given to CreateUserWithToken
)

// User is a person or service account of tandem.
type User struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"createdAt"`
}

// Store keeps users and tokens.
type Store struct {
	db *statestore.DB
}

// NewStore returns a Store over db, whose [Migrations] must be applied.
func NewStore(db *statestore.DB) *Store { return &Store{db: db} }

// Migrations returns the package's schema migrations, for
// [statestore.DB.Migrate].
func Migrations() []statestore.Migration {
	return []statestore.Migration{{
		Package: "access",
		Version: 1,
		SQL: `
CREATE TABLE access_users (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	role TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE access_tokens (
	token_hash TEXT PRIMARY KEY,
	user_id TEXT NOT NULL REFERENCES access_users (id) ON DELETE CASCADE,
	created_at BIGINT NOT NULL
);
CREATE INDEX access_tokens_user ON access_tokens (user_id);
`,
	}, {
		Package: "access",
		Version: 2,
		SQL: `
CREATE TABLE access_secrets (
	name TEXT PRIMARY KEY,
	value TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
`,
	}}
}

// Secret returns the installation's secret called name (32 random bytes),
// creating it on first use. Every node sharing the state store gets the
// same one: the masking of personal data keys its pseudonyms with the
// secret "mask", so they are equal on every node and across restarts.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	var v string
	err := s.db.QueryRow(ctx, `SELECT value FROM access_secrets WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, statestore.ErrNotFound) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("access: secret: %w", err)
		}
		// Two nodes may race to create it: the first one wins, both read it.
		if _, err := s.db.Exec(ctx, `INSERT INTO access_secrets (name, value, created_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`,
			name, hex.EncodeToString(b), statestore.TimeToDB(time.Now())); err != nil {
			return nil, fmt.Errorf("access: secret: %w", err)
		}
		err = s.db.QueryRow(ctx, `SELECT value FROM access_secrets WHERE name = ?`, name).Scan(&v)
	}
	if err != nil {
		return nil, fmt.Errorf("access: secret: %w", err)
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		return nil, fmt.Errorf("access: secret %q is damaged: %w", name, err)
	}
	return b, nil
}

// CreateUser creates a user with a new random token, returned once: only
// its hash is stored. A bad name or role gives a *[FieldError] for "name"
// or "role".
func (s *Store) CreateUser(ctx context.Context, name string, role Role) (User, string, error) {
	token, err := NewToken()
	if err != nil {
		return User{}, "", fmt.Errorf("access: create user: %w", err)
	}
	u, err := s.CreateUserWithToken(ctx, name, role, token)
	if err != nil {
		return User{}, "", err
	}
	return u, token, nil
}

// CreateUserWithToken creates a user whose token is the given one: the
// bootstrap admin's token comes from TANDEM_ADMIN_TOKEN. The token may be
// any printable ASCII without spaces (it travels in an Authorization
// header), up to [MaxTokenLen] bytes; a *[FieldError] for "token" says
// otherwise. A token already in use gives an error matching
// [statestore.ErrConflict].
func (s *Store) CreateUserWithToken(ctx context.Context, name string, role Role, token string) (User, error) {
	if err := validateToken(token); err != nil {
		return User{}, fmt.Errorf("access: create user: %w", err)
	}
	return s.CreateUserWithTokenHash(ctx, name, role, TokenHash(token))
}

// ValidateUser checks a new user's name and role and returns the name
// trimmed; errors are *[FieldError]s for "name" or "role".
func ValidateUser(name string, role Role) (string, error) { return validateUser(name, role) }

// TokenHash is what the store keeps of a token: its hex SHA-256.
func TokenHash(token string) string { return hashToken(token) }

// CreateUserWithTokenHash creates a user whose token has hash
// ([TokenHash]): a user proposed in a change request, whose token was
// shown once to its proposer while only the hash was kept until the
// approval created the user. Errors as [Store.CreateUserWithToken]'s.
func (s *Store) CreateUserWithTokenHash(ctx context.Context, name string, role Role, hash string) (User, error) {
	name, err := validateUser(name, role)
	if err == nil && len(hash) != sha256.Size*2 {
		err = &FieldError{Field: "token", Message: "is not a token's hash"}
	}
	if err != nil {
		return User{}, fmt.Errorf("access: create user: %w", err)
	}
	u := User{
		ID:        statestore.NewID("usr"),
		Name:      name,
		Role:      role,
		CreatedAt: time.Now().UTC().Round(0), // no monotonic reading: equal to what is read back
	}
	err = s.db.Tx(ctx, func(tx *statestore.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO access_users (id, name, role, created_at) VALUES (?, ?, ?, ?)`,
			u.ID, u.Name, string(u.Role), statestore.TimeToDB(u.CreatedAt)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO access_tokens (token_hash, user_id, created_at) VALUES (?, ?, ?)`,
			hash, u.ID, statestore.TimeToDB(u.CreatedAt)); err != nil {
			if errors.Is(err, statestore.ErrConflict) {
				return fmt.Errorf("token already in use: %w", err)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return User{}, fmt.Errorf("access: create user: %w", err)
	}
	return u, nil
}

// Authenticate returns the user whose token this is, or an error matching
// [ErrUnauthenticated]. Other errors (the database being unreachable) are
// not ErrUnauthenticated.
func (s *Store) Authenticate(ctx context.Context, token string) (User, error) {
	if token == "" || len(token) > MaxTokenLen {
		return User{}, ErrUnauthenticated
	}
	want := hashToken(token)
	var u User
	var got string
	var role string
	var created int64
	err := s.db.QueryRow(ctx, `SELECT u.id, u.name, u.role, u.created_at, t.token_hash
		FROM access_tokens t JOIN access_users u ON u.id = t.user_id
		WHERE t.token_hash = ?`, want).Scan(&u.ID, &u.Name, &role, &created, &got)
	if errors.Is(err, statestore.ErrNotFound) {
		return User{}, ErrUnauthenticated
	}
	if err != nil {
		return User{}, fmt.Errorf("access: authenticate: %w", err)
	}
	// The lookup was by hash; compare again in constant time so that no
	// code path's timing depends on how much of a guess was right.
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return User{}, ErrUnauthenticated
	}
	u.Role = Role(role)
	u.CreatedAt = statestore.TimeFromDB(created)
	return u, nil
}

// CountUsers returns the number of users (0 on a new installation, when
// the bootstrap admin must be created).
func (s *Store) CountUsers(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRow(ctx, `SELECT COUNT(*) FROM access_users`).Scan(&n); err != nil {
		return 0, fmt.Errorf("access: count users: %w", err)
	}
	return n, nil
}

// GetUser returns the user with id, or an error matching
// [statestore.ErrNotFound].
func (s *Store) GetUser(ctx context.Context, id string) (User, error) {
	var u User
	var role string
	var created int64
	err := s.db.QueryRow(ctx, `SELECT id, name, role, created_at FROM access_users WHERE id = ?`, id).
		Scan(&u.ID, &u.Name, &role, &created)
	if err != nil {
		return User{}, fmt.Errorf("access: get user %q: %w", id, err)
	}
	u.Role = Role(role)
	u.CreatedAt = statestore.TimeFromDB(created)
	return u, nil
}

// ListUsers returns up to limit users (see [statestore.Limit]) in creation
// order, starting after cursor ("" for the first page), and the cursor of
// the next page, "" after the last. A bad cursor gives a *[FieldError] for
// "cursor".
func (s *Store) ListUsers(ctx context.Context, limit int, cursor string) ([]User, string, error) {
	limit = statestore.Limit(limit)
	after, err := statestore.DecodeCursor(cursor, 1)
	if err != nil {
		return nil, "", fmt.Errorf("access: list users: %w", err)
	}
	q := `SELECT id, name, role, created_at FROM access_users`
	args := []any{}
	if after != nil {
		q += ` WHERE id > ?`
		args = append(args, after[0])
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit+1)
	rows, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, "", fmt.Errorf("access: list users: %w", err)
	}
	defer rows.Close()
	users := []User{}
	for rows.Next() {
		var u User
		var role string
		var created int64
		if err := rows.Scan(&u.ID, &u.Name, &role, &created); err != nil {
			return nil, "", fmt.Errorf("access: list users: %w", err)
		}
		u.Role = Role(role)
		u.CreatedAt = statestore.TimeFromDB(created)
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("access: list users: %w", err)
	}
	next := ""
	if len(users) > limit {
		users = users[:limit]
		next = statestore.EncodeCursor(users[limit-1].ID)
	}
	return users, next, nil
}

// tokenEncoding is lower-case base32 without padding: tokens are letters
// and digits only, selectable with a double click.
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewToken returns a new random token: [TokenPrefix] and 32 random bytes
// from crypto/rand, base32-encoded (56 characters in all).
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("access: new token: %w", err)
	}
	return TokenPrefix + tokenEncoding.EncodeToString(b[:]), nil
}

// hashToken returns the hex SHA-256 of token: what the store keeps.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// validateUser checks a new user's fields and returns the name trimmed.
func validateUser(name string, role Role) (string, error) {
	name = strings.TrimSpace(name)
	if err := ValidateName("name", name, MaxNameLen); err != nil {
		return "", err
	}
	if !role.Valid() {
		return "", &FieldError{Field: "role", Message: fmt.Sprintf("must be one of %s", roleList())}
	}
	return name, nil
}

// ValidateName checks a required, single-line, human-readable text field
// (already trimmed): not empty, valid UTF-8, no control characters, at most
// max characters. It returns a *[FieldError] for field.
func ValidateName(field, value string, max int) error {
	switch {
	case value == "":
		return &FieldError{Field: field, Message: "is required"}
	case !utf8.ValidString(value):
		return &FieldError{Field: field, Message: "is not valid UTF-8"}
	case utf8.RuneCountInString(value) > max:
		return &FieldError{Field: field, Message: fmt.Sprintf("is longer than %d characters", max)}
	case strings.ContainsFunc(value, unicode.IsControl):
		return &FieldError{Field: field, Message: "contains control characters"}
	}
	return nil
}

func validateToken(token string) error {
	switch {
	case token == "":
		return &FieldError{Field: "token", Message: "is required"}
	case len(token) > MaxTokenLen:
		return &FieldError{Field: "token", Message: fmt.Sprintf("is longer than %d bytes", MaxTokenLen)}
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			return &FieldError{Field: "token", Message: "may hold only printable ASCII characters without spaces"}
		}
	}
	return nil
}
