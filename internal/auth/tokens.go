package auth

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Role is what a token may do.
type Role int

const (
	// RoleNone is the zero Role: no token, or an unknown one.
	RoleNone Role = iota
	// RoleWorker may call WorkerService.
	RoleWorker
	// RoleViewer may call ControlService's read methods.
	RoleViewer
	// RoleAdmin may call everything.
	RoleAdmin
)

func (r Role) String() string {
	switch r {
	case RoleWorker:
		return "worker"
	case RoleViewer:
		return "viewer"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// ParseRole parses "worker", "viewer" or "admin".
func ParseRole(s string) (Role, error) {
	switch s {
	case "worker":
		return RoleWorker, nil
	case "viewer":
		return RoleViewer, nil
	case "admin":
		return RoleAdmin, nil
	}
	return RoleNone, fmt.Errorf("role %q is not worker, viewer or admin", s)
}

// MinTokenLen is the shortest token accepted: 16 characters of hex is 64 bits, the least
// that is not guessable online; 64 hex characters (openssl rand -hex 32) are recommended.
const MinTokenLen = 16

// Identity is who a request authenticated as; the interceptors put it in the context.
type Identity struct {
	Role Role
	// Name is the token's name from the tokens file ("" when it has none); log it, never
	// the token.
	Name string
}

type entry struct {
	digest [sha256.Size]byte
	id     Identity
}

// Tokens is a parsed tokens file; it is immutable and safe for concurrent use.
type Tokens struct {
	entries []entry
}

// ParseTokens reads the tokens-file format described in the package comment. Errors name
// the line but never echo the token.
func ParseTokens(r io.Reader) (*Tokens, error) {
	t := &Tokens{}
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 2 || len(fields) > 3 {
			return nil, fmt.Errorf("line %d: want \"role token [name]\", got %d fields", line, len(fields))
		}
		role, err := ParseRole(fields[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		tok := fields[1]
		if len(tok) < MinTokenLen {
			return nil, fmt.Errorf("line %d: token is %d characters, want at least %d", line, len(tok), MinTokenLen)
		}
		for _, c := range []byte(tok) {
			if c < 0x21 || c > 0x7e {
				return nil, fmt.Errorf("line %d: token has a non-printable or non-ASCII character", line)
			}
		}
		e := entry{digest: sha256.Sum256([]byte(tok)), id: Identity{Role: role}}
		if len(fields) == 3 {
			e.id.Name = fields[2]
		}
		if prev, dup := seen[e.digest]; dup {
			return nil, fmt.Errorf("line %d: same token as line %d", line, prev)
		}
		seen[e.digest] = line
		t.entries = append(t.entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	if len(t.entries) == 0 {
		return nil, errors.New("no tokens")
	}
	return t, nil
}

// LoadTokensFile reads a tokens file. warning is non-empty when the file is readable or
// writable by group or others: the coordinator should log it (and the operator chmod 600
// the file) but still start, since a Kubernetes secret volume may be mounted 0644 by
// default.
func LoadTokensFile(path string) (tokens *Tokens, warning string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("tokens file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", fmt.Errorf("tokens file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		warning = fmt.Sprintf("tokens file %s has mode %#o: other users may read it; chmod 600 it", path, perm)
	}
	tokens, err = ParseTokens(f)
	if err != nil {
		return nil, "", fmt.Errorf("tokens file %s: %w", path, err)
	}
	return tokens, warning, nil
}

// Lookup returns the identity a token belongs to. Every entry is compared, in constant
// time over SHA-256 digests, so the time taken says nothing about which entry, if any,
// matched or how long the valid tokens are.
func (t *Tokens) Lookup(token string) (Identity, bool) {
	d := sha256.Sum256([]byte(token))
	var found Identity
	ok := 0
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(d[:], t.entries[i].digest[:])
		if eq == 1 {
			found = t.entries[i].id
		}
		ok |= eq
	}
	return found, ok == 1
}

// Len is the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }
