package devenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/loomhq/loom/server/auth"
)

// credentials are `loom dev`'s tokens and keys, made on its first start and
// kept in its data directory (files readable by their owner only).
type credentials struct {
	tokensFile, keysFile                  string
	operator, migrator, admin             string
	operatorFile, migratorFile, adminFile string
}

// devToken is one of the tokens `loom dev` makes.
type devToken struct {
	subject string
	role    auth.Role
	scope   auth.Scope
	file    string
	token   *string
}

func ensureCredentials(dir string) (credentials, error) {
	c := credentials{
		tokensFile:   filepath.Join(dir, "tokens.json"),
		keysFile:     filepath.Join(dir, "keys.json"),
		operatorFile: filepath.Join(dir, "operator.token"),
		migratorFile: filepath.Join(dir, "migrator.token"),
		adminFile:    filepath.Join(dir, "admin.token"),
	}
	if _, err := os.Stat(c.keysFile); errors.Is(err, os.ErrNotExist) {
		keys, err := auth.NewKeysFile()
		if err != nil {
			return c, err
		}
		if err := writeSecret(c.keysFile, keys); err != nil {
			return c, err
		}
	}
	operator := devToken{"dev-operator", auth.RoleOperator, auth.Scope{}, c.operatorFile, &c.operator}
	migrator := devToken{"dev-migrator", auth.RoleMigrator, auth.AllMigrations, c.migratorFile, &c.migrator}
	admin := devToken{"dev-admin", auth.RoleAdmin, auth.Scope{}, c.adminFile, &c.admin}

	op, errOp := os.ReadFile(c.operatorFile)
	mig, errMig := os.ReadFile(c.migratorFile)
	tokens, errTok := os.ReadFile(c.tokensFile)
	if errOp != nil || errMig != nil || errTok != nil {
		// First start (or a token lost): make every token afresh.
		var f auth.TokensFile
		for _, t := range []devToken{operator, migrator, admin} {
			if err := t.make(&f); err != nil {
				return c, err
			}
		}
		return c, writeSecret(c.tokensFile, f)
	}
	c.operator, c.migrator = strings.TrimSpace(string(op)), strings.TrimSpace(string(mig))
	if ad, err := os.ReadFile(c.adminFile); err == nil {
		c.admin = strings.TrimSpace(string(ad))
		return c, nil
	}
	// A data directory of a `loom dev` that made no admin token: add one,
	// keeping the tokens the file holds (some may have been added by hand).
	var f auth.TokensFile
	if err := json.Unmarshal(tokens, &f); err != nil {
		return c, fmt.Errorf("%s: %w (fix it, or delete it and %s to make new tokens)", c.tokensFile, err, c.operatorFile)
	}
	if err := admin.make(&f); err != nil {
		return c, err
	}
	return c, writeSecret(c.tokensFile, f)
}

// make makes t's token, writes it to its file and adds its hash to f.
func (t devToken) make(f *auth.TokensFile) error {
	token, hash, err := auth.NewToken()
	if err != nil {
		return err
	}
	f.Tokens = append(f.Tokens, auth.StaticToken{Subject: t.subject, Role: t.role, SHA256: hash, Scope: t.scope})
	if err := os.WriteFile(t.file, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	*t.token = token
	return nil
}

func writeSecret(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
