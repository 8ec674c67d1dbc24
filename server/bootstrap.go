package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"tandem/access"
	"tandem/audit"
	"tandem/governance"
	"tandem/statestore"
)

// bootstrap creates the first admin on a new data directory: with the token
// in TANDEM_ADMIN_TOKEN if set, else a random one written to
// DIR/admin.token (mode 0600). Only the path is logged, never the token. It
// also creates an approved source "default" whose write key goes to
// DIR/default.writekey, so a first event can be sent right away.
func (s *Server) bootstrap(ctx context.Context) error {
	n, err := s.Access.CountUsers(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if n > 0 {
		return nil
	}
	admin, err := s.bootstrapAdmin(ctx)
	if err != nil {
		return err
	}
	return s.bootstrapSource(ctx, admin)
}

func (s *Server) bootstrapAdmin(ctx context.Context) (admin access.User, err error) {
	if tok := os.Getenv("TANDEM_ADMIN_TOKEN"); tok != "" {
		admin, err = s.Access.CreateUserWithToken(ctx, "admin", access.RoleAdmin, tok)
		if errors.Is(err, statestore.ErrConflict) {
			// Another node sharing the state store bootstrapped the same
			// admin at the same moment: that admin is ours too.
			if admin, err = s.Access.Authenticate(ctx, tok); err == nil {
				return admin, nil
			}
		}
		if err != nil {
			return admin, fmt.Errorf("bootstrap admin from TANDEM_ADMIN_TOKEN: %w", err)
		}
		s.logger.Info("created the first admin with the token from TANDEM_ADMIN_TOKEN")
		s.recordBootstrap(ctx, "user.create", "user/"+admin.ID, map[string]any{"id": admin.ID, "role": admin.Role})
	} else {
		// The file is written before the user exists: a crash in between
		// leaves no admin, and the next start simply does this again.
		tok, err := access.NewToken()
		if err != nil {
			return admin, fmt.Errorf("bootstrap admin: %w", err)
		}
		path := filepath.Join(s.cfg.DataDir, "admin.token")
		if err := writeSecret(path, tok); err != nil {
			return admin, fmt.Errorf("bootstrap admin: %w", err)
		}
		if admin, err = s.Access.CreateUserWithToken(ctx, "admin", access.RoleAdmin, tok); err != nil {
			return admin, fmt.Errorf("bootstrap admin: %w", err)
		}
		s.logger.Info("created the first admin; its token is in the file", "path", path)
		s.recordBootstrap(ctx, "user.create", "user/"+admin.ID, map[string]any{"id": admin.ID, "role": admin.Role})
	}
	return admin, nil
}

func (s *Server) bootstrapSource(ctx context.Context, admin access.User) error {
	src, key, err := s.Governance.CreateSource(ctx, governance.Source{
		Name: "default", Kind: "server", Owner: "it", Purpose: "first source, created at bootstrap",
	}, admin)
	if errors.Is(err, statestore.ErrConflict) {
		return nil // created by an earlier start that stopped half-way
	}
	if err != nil {
		return fmt.Errorf("bootstrap default source: %w", err)
	}
	path := filepath.Join(s.cfg.DataDir, "default.writekey")
	if err := writeSecret(path, key); err != nil {
		return fmt.Errorf("bootstrap default source: %w", err)
	}
	s.logger.Info("created source \"default\"; its write key is in the file", "path", path)
	s.recordBootstrap(ctx, "source.create", "source/"+src.ID, struct {
		governance.Source
		WriteKeyDigest string `json:"writeKeyDigest"`
	}{src, audit.Digest(key)})
	return nil
}

// recordBootstrap records in the audit log what the bootstrap created, by
// tandem itself. A failure is logged: the server starts either way.
func (s *Server) recordBootstrap(ctx context.Context, action, resource string, after any) {
	if _, err := s.Audit.Append(ctx, audit.Record{Actor: audit.System, Action: action, Resource: resource, After: after}); err != nil {
		s.logger.Error("audit log: the bootstrap was not recorded", "action", action, "err", err.Error())
	}
}

func writeSecret(path, secret string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(secret + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
