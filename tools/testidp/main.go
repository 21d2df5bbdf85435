// Command testidp is an OpenID Provider for the console's end-to-end tests
// and for trying the console's single sign-on locally. It is zitadel/oidc's
// certified provider library with its example in-memory storage, set up for
// Loom: one public client (authorization code + PKCE, JWT access tokens
// whose audience is the client id), users whose tokens carry a loom_role
// claim, and a login form.
//
//	go run ./testidp -addr 127.0.0.1:9998 -client-id loom-console \
//	    -redirect-uri http://127.0.0.1:8080/signin/callback
//
// Users (password "loom"): ada (operator), linus (viewer). Nothing here is
// fit for production: keys and sessions live in memory.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

const password = "loom"

var users = []struct{ id, name, role string }{
	{"u-ada", "ada", "operator"},
	{"u-linus", "linus", "viewer"},
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9998", "address to listen on")
	clientID := flag.String("client-id", "loom-console", "the console's client id")
	redirects := flag.String("redirect-uri", "http://127.0.0.1:8080/signin/callback", "allowed redirect URIs, comma-separated")
	flag.Parse()

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	issuer := "http://" + l.Addr().String()
	byID := map[string]*storage.User{}
	roles := map[string]string{}
	for _, u := range users {
		byID[u.id] = &storage.User{ID: u.id, Username: u.name, Password: password, FirstName: u.name,
			Email: u.name + "@example.com", EmailVerified: true, PreferredLanguage: language.English}
		roles[u.id] = u.role
	}
	client := storage.NativeClient(*clientID, strings.Split(*redirects, ",")...)
	st := &loomStorage{
		Storage: storage.NewStorageWithClients(userStore(byID), map[string]*storage.Client{*clientID: client}),
		client:  jwtClient{client},
		roles:   roles,
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	router := exampleop.SetupServer(issuer, st, quiet, false)
	fmt.Printf("issuer %s\n", issuer)
	log.Fatal(http.Serve(l, router))
}

// loomStorage adds Loom's role claim to the example storage's tokens.
type loomStorage struct {
	*storage.Storage
	client op.Client
	roles  map[string]string
}

func (s *loomStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	if id == s.client.GetID() {
		return s.client, nil
	}
	return s.Storage.GetClientByClientID(ctx, id)
}

// GetPrivateClaimsFromScopes is what JWT access tokens carry.
func (s *loomStorage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if claims == nil {
		claims = map[string]any{}
	}
	claims["loom_role"] = s.roles[userID]
	return claims, err
}

// SetUserinfoFromScopes is what ID tokens carry.
func (s *loomStorage) SetUserinfoFromScopes(ctx context.Context, info *oidc.UserInfo, userID, clientID string, scopes []string) error {
	if err := s.Storage.SetUserinfoFromScopes(ctx, info, userID, clientID, scopes); err != nil {
		return err
	}
	info.AppendClaims("loom_role", s.roles[userID])
	return nil
}

// jwtClient issues JWT access tokens, which Loom verifies with the keys.
type jwtClient struct{ *storage.Client }

func (jwtClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }

type userStore map[string]*storage.User

func (u userStore) GetUserByID(id string) *storage.User { return u[id] }

func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, x := range u {
		if x.Username == name {
			return x
		}
	}
	return nil
}

func (userStore) ExampleClientID() string { return "" }
