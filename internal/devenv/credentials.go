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
	tokensFile, keysFile       string
	operator, migrator         string
	operatorFile, migratorFile string
}

func ensureCredentials(dir string) (credentials, error) {
	c := credentials{
		tokensFile:   filepath.Join(dir, "tokens.json"),
		keysFile:     filepath.Join(dir, "keys.json"),
		operatorFile: filepath.Join(dir, "operator.token"),
		migratorFile: filepath.Join(dir, "migrator.token"),
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
	op, errOp := os.ReadFile(c.operatorFile)
	mig, errMig := os.ReadFile(c.migratorFile)
	_, errTok := os.Stat(c.tokensFile)
	if errOp == nil && errMig == nil && errTok == nil {
		c.operator, c.migrator = strings.TrimSpace(string(op)), strings.TrimSpace(string(mig))
		return c, nil
	}
	// First start (or a token lost): make both tokens afresh.
	var f auth.TokensFile
	for _, t := range []struct {
		subject string
		role    auth.Role
		scope   auth.Scope
		file    string
		token   *string
	}{
		{"dev-operator", auth.RoleOperator, auth.Scope{}, c.operatorFile, &c.operator},
		{"dev-migrator", auth.RoleMigrator, auth.AllMigrations, c.migratorFile, &c.migrator},
	} {
		token, hash, err := auth.NewToken()
		if err != nil {
			return c, err
		}
		f.Tokens = append(f.Tokens, auth.StaticToken{Subject: t.subject, Role: t.role, SHA256: hash, Scope: t.scope})
		if err := os.WriteFile(t.file, []byte(token+"\n"), 0o600); err != nil {
			return c, err
		}
		*t.token = token
	}
	return c, writeSecret(c.tokensFile, f)
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
