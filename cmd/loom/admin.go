package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/loomhq/loom/internal/cli"
	"github.com/loomhq/loom/server/auth"
)

// tokensCreate is `loom tokens create`: a new static token, printed once,
// and its hashed entry, printed or added to a tokens file.
func tokensCreate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("loom tokens create")
	fs.SetOutput(stderr)
	subject := fs.String("subject", "", "who the token is for, as recorded on their actions (required)")
	role := fs.String("role", "", "viewer, operator, migrator or admin (required)")
	migrations := fs.String("migrations", "", "for a migrator: the Migration ids it owns, comma-separated")
	prefixes := fs.String("migration-prefixes", "", "for a migrator: id prefixes it owns, comma-separated")
	all := fs.Bool("all-migrations", false, "for a migrator: it owns every Migration")
	file := fs.String("add-to", "", "add the entry to this tokens file (created if missing)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	entry := auth.StaticToken{Subject: *subject, Role: auth.Role(*role),
		Scope: auth.Scope{All: *all, IDs: cli.SplitList(*migrations), Prefixes: cli.SplitList(*prefixes)}}
	token, hash, err := auth.NewToken()
	if err != nil {
		return err
	}
	entry.SHA256 = hash
	if _, err := auth.NewStaticTokens([]auth.StaticToken{entry}); err != nil {
		return err
	}
	if *file != "" {
		if err := addToken(*file, entry); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "added %s (%s) to %s; a loom serve or loom-dev reading it takes it within seconds\n", entry.Subject, entry.Role, *file)
	} else {
		b, _ := json.Marshal(entry)
		fmt.Fprintf(stderr, "tokens file entry (stores only the hash):\n%s\n", b)
	}
	fmt.Fprintln(stderr, "the token, shown once:")
	fmt.Fprintln(stdout, token)
	return nil
}

func addToken(path string, entry auth.StaticToken) error {
	var f auth.TokensFile
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	f.Tokens = append(f.Tokens, entry)
	if _, err := auth.NewStaticTokens(f.Tokens); err != nil {
		return err
	}
	return writeJSON(path, f)
}

// keysInit is `loom keys init`: a new keys file.
func keysInit(args []string, stderr io.Writer) error {
	fs := newFlagSet("loom keys init")
	fs.SetOutput(stderr)
	out := fs.String("out", "keys.json", "where to write the keys file (never overwritten)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("%s exists: rotate keys by editing it (new key first, old keys kept), not by replacing it", *out)
	}
	keys, err := auth.NewKeysFile()
	if err != nil {
		return err
	}
	if err := writeJSON(*out, keys); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s: keep it secret, give it to every replica (-keys-file)\n", *out)
	return nil
}

// writeJSON writes v to path, readable by its owner only.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
