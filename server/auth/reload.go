package auth

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// FileTokens are the static tokens of a tokens file, reread by Reload when
// the file changes: a token added to the file (`loom tokens create
// -add-to`) or removed from it takes effect without a restart. A file that
// cannot be read, or does not check, leaves the tokens as they were: a
// half-edited file never locks everyone out.
type FileTokens struct {
	path string
	cur  atomic.Pointer[StaticTokens]

	mu sync.Mutex // one Reload at a time
	// seen is the file as it was when last read, whether its tokens took
	// effect or not: a file is read again only once it changed.
	seen os.FileInfo
}

// OpenTokensFile reads the tokens file at path; unlike Reload, it fails
// when the file cannot be read or does not check.
func OpenTokensFile(path string) (*FileTokens, error) {
	f := &FileTokens{path: path}
	if _, err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Path is the tokens file.
func (f *FileTokens) Path() string { return f.path }

// Len is how many tokens are in effect.
func (f *FileTokens) Len() int {
	if st := f.cur.Load(); st != nil {
		return len(st.byHash)
	}
	return 0
}

// Authenticate returns the principal of a static token, against the tokens
// in effect now.
func (f *FileTokens) Authenticate(token string) (Principal, error) {
	st := f.cur.Load()
	if st == nil {
		return Principal{}, ErrUnknownToken
	}
	return st.Authenticate(token)
}

// AuthenticateHash is StaticTokens.AuthenticateHash against the tokens in
// effect now.
func (f *FileTokens) AuthenticateHash(h string) (Principal, error) {
	st := f.cur.Load()
	if st == nil {
		return Principal{}, ErrUnknownToken
	}
	return st.AuthenticateHash(h)
}

// Reload rereads the file if it changed since it was last read (another
// file renamed over it, another modification time or size), and puts its
// tokens in effect. It reports whether they changed. On an error the
// tokens stay as they were; a file that changed and failed is not read
// again until it changes again, so the same error is returned once.
func (f *FileTokens) Reload() (changed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil {
		return false, fmt.Errorf("read tokens file: %w", err)
	}
	if f.seen != nil && os.SameFile(f.seen, fi) && fi.ModTime().Equal(f.seen.ModTime()) && fi.Size() == f.seen.Size() {
		return false, nil
	}
	f.seen = fi
	st, err := LoadTokens(f.path)
	if err != nil {
		return false, err
	}
	f.cur.Store(st)
	return true, nil
}
