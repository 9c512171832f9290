//! The web app's built files (`web/dist`), served on the edge's public
//! address beside the API. Only GET and HEAD come here: gRPC and grpc-web
//! calls are always POST and CORS preflights OPTIONS, and a GET shaped like
//! an RPC path (`/package.Service/Method`) is left to the proxy too, so the
//! app can never shadow an API route.
//!
//! The files are read into memory once when the edge binds (a build is a few
//! hundred kilobytes); requests never touch the file system, so no path a
//! client sends can reach outside the directory. Vite's content-hashed
//! `assets/` are cached for a year as immutable; everything else (`index.html`
//! above all) must be revalidated, with an `ETag` to make that cheap. A path
//! that names no file and has no extension gets `index.html`, so the app's
//! own routes (`/events/…`) survive a reload; a missing file is a 404.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::path::Path;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::proxy::ResponseBody;

/// Hashed build output: safe to cache forever.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Everything else: revalidate every time.
const REVALIDATE: &str = "no-cache";
/// Where `vite build` puts the content-hashed files.
const HASHED_DIR: &str = "assets/";
/// Refuse absurd directories rather than fill memory.
const MAX_TOTAL_BYTES: u64 = 256 * 1024 * 1024;

struct WebFile {
    body: Bytes,
    content_type: &'static str,
    cache_control: &'static str,
    etag: HeaderValue,
}

/// The app's files, by path relative to the build directory (`/` separated).
pub(crate) struct WebFiles {
    files: HashMap<String, WebFile>,
}

impl WebFiles {
    /// Reads every file under `dir`; it must hold an `index.html`.
    pub(crate) fn load(dir: &Path) -> anyhow::Result<Self> {
        let mut files = HashMap::new();
        let mut total = 0u64;
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((path, prefix)) = pending.pop() {
            let entries = std::fs::read_dir(&path)
                .with_context(|| format!("reading the web app directory {}", path.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("listing {}", path.display()))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    pending.push((entry.path(), format!("{prefix}{name}/")));
                } else if kind.is_file() {
                    let body = std::fs::read(entry.path())
                        .with_context(|| format!("reading {}", entry.path().display()))?;
                    total += body.len() as u64;
                    anyhow::ensure!(
                        total <= MAX_TOTAL_BYTES,
                        "the web app directory {} holds more than {MAX_TOTAL_BYTES} bytes",
                        dir.display()
                    );
                    let key = format!("{prefix}{name}");
                    files.insert(key.clone(), WebFile::new(&key, Bytes::from(body)));
                }
            }
        }
        anyhow::ensure!(
            files.contains_key("index.html"),
            "the web app directory {} has no index.html (build it: npm run build in web/)",
            dir.display()
        );
        Ok(Self { files })
    }

    /// Whether this request is for the app rather than the API.
    pub(crate) fn wants<B>(request: &Request<B>) -> bool {
        (request.method() == Method::GET || request.method() == Method::HEAD)
            && !looks_like_rpc(request.uri().path())
    }

    /// Answers a request [`WebFiles::wants`].
    pub(crate) fn respond<B>(&self, request: &Request<B>) -> Response<ResponseBody> {
        let path = request.uri().path().trim_start_matches('/');
        let key = if path.is_empty() { "index.html" } else { path };
        let file = match self.files.get(key) {
            Some(file) => file,
            None if !last_segment_has_extension(key) => &self.files["index.html"],
            None => return not_found(),
        };
        let not_modified = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tags| {
                tags.as_bytes()
                    .split(|&b| b == b',')
                    .any(|tag| tag.trim_ascii() == file.etag.as_bytes() || tag.trim_ascii() == b"*")
            });
        let builder = Response::builder()
            .header(header::CACHE_CONTROL, file.cache_control)
            .header(header::ETAG, file.etag.clone())
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
        let response = if not_modified {
            builder
                .status(StatusCode::NOT_MODIFIED)
                .body(ResponseBody::Empty)
        } else {
            let body = if request.method() == Method::HEAD {
                ResponseBody::Empty
            } else {
                full(file.body.clone())
            };
            builder
                .header(header::CONTENT_TYPE, file.content_type)
                .header(header::CONTENT_LENGTH, file.body.len())
                .body(body)
        };
        response.unwrap_or_else(|_| not_found())
    }
}

impl WebFile {
    fn new(key: &str, body: Bytes) -> Self {
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}-{:x}\"", hasher.finish(), body.len()))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Self {
            content_type: content_type(key),
            cache_control: if key.starts_with(HASHED_DIR) {
                IMMUTABLE
            } else {
                REVALIDATE
            },
            body,
            etag,
        }
    }
}

fn full(bytes: Bytes) -> ResponseBody {
    ResponseBody::Local(tonic::body::Body::new(http_body_util::Full::new(bytes)))
}

fn not_found() -> Response<ResponseBody> {
    let mut response = Response::new(full(Bytes::from_static(b"not found\n")));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `/package.Service/Method`: the shape of every gRPC path.
fn looks_like_rpc(path: &str) -> bool {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return false;
    };
    service.contains('.') && !method.is_empty() && !method.contains(['/', '.'])
}

fn last_segment_has_extension(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'))
}

fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension.to_ascii_lowercase().as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_paths_are_recognised() {
        assert!(looks_like_rpc(
            "/boxoffice.catalog.v1.CatalogService/GetEvent"
        ));
        assert!(looks_like_rpc("/grpc.health.v1.Health/Check"));
        assert!(!looks_like_rpc("/"));
        assert!(!looks_like_rpc("/events/123"));
        assert!(!looks_like_rpc("/assets/index-abc.js"));
        assert!(!looks_like_rpc("/favicon.ico"));
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/index-abc.JS"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("README"), "application/octet-stream");
    }
}
