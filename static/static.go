// Package static holds the embedded web assets and serves them at
// content-hashed URLs, so browsers may cache them forever.
package static

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
)

//go:embed *.css *.js vendor/*.js
var files embed.FS

// Prefix is where the assets are served.
const Prefix = "/static/"

type index struct {
	hashed map[string]string // name → hashed name
	byHash map[string]string // hashed name → name
}

// assets hashes every file once, on first use.
var assets = sync.OnceValue(func() index {
	ix := index{hashed: map[string]string{}, byHash: map[string]string{}}
	_ = fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		ext := path.Ext(name)
		h := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:5]) + ext
		ix.hashed[name], ix.byHash[h] = h, name
		return nil
	})
	return ix
})

// Path returns the URL of the named asset, with its content hash.
func Path(name string) string {
	h, ok := assets().hashed[name]
	if !ok {
		panic("static: no asset " + name)
	}
	return Prefix + h
}

// Handler serves the assets under Prefix.
func Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := assets().byHash[strings.TrimPrefix(r.URL.Path, Prefix)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		data, _ := files.ReadFile(name)
		w.Header().Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(data)
	})
}
