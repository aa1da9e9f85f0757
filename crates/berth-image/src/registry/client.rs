//! The registry client: one per registry host. It owns the HTTP agent (TLS roots plus the
//! registry's `certs.d` CA files), the auth state, and the retry policy; the distribution API
//! operations live in the sibling modules (`manifest`, `blob`, `push`).

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use url::Url;

use super::auth::{self, AuthState, Challenge};
use super::config::{Credentials, RegistryConfig, DOCKER_HUB_ENDPOINT};
use crate::error::{Error, Result};

/// How often and how patiently to retry on 5xx answers and connection errors.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The wait before the first retry; it doubles each time.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 5, initial_backoff: Duration::from_millis(250), max_backoff: Duration::from_secs(8) }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// A request body: replayable bytes, or a one-shot reader (never resent after a 401).
pub(crate) enum Body<'a> {
    /// No body.
    Empty,
    /// A body that can be sent again.
    Bytes(&'a [u8]),
    /// A body that can be sent once.
    Reader(&'a mut dyn Read),
}

/// One request to the registry: what, where, for which repository and auth scope.
pub(crate) struct Request<'a> {
    /// HTTP method.
    pub method: &'static str,
    /// Absolute URL.
    pub url: Url,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// The repository, for error messages (empty for registry-wide requests).
    pub repository: &'a str,
    /// The token scopes this request needs.
    pub scopes: Vec<String>,
    /// The operation, for error messages (`GET manifest latest`).
    pub what: String,
}

/// A client for one registry (distribution API v2).
pub struct RegistryClient {
    registry: String,
    base: Url,
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    auth: AuthState,
    retry: RetryPolicy,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient").field("registry", &self.registry).field("base", &self.base.as_str()).finish()
    }
}

impl RegistryClient {
    /// A client for `registry` (`host[:port]`), HTTPS unless `config` marks it insecure.
    pub fn new(registry: &str, config: &RegistryConfig, credentials: Option<Credentials>) -> Result<Self> {
        let endpoint = if registry == "docker.io" || registry == "index.docker.io" { DOCKER_HUB_ENDPOINT } else { registry };
        let scheme = if config.is_insecure(registry) { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{endpoint}/"))
            .ok()
            .filter(|u| u.path() == "/" && u.query().is_none() && u.username().is_empty())
            .ok_or_else(|| Error::Registry { registry: registry.into(), message: "not a valid host[:port]".into() })?;
        let tls = tls_config(registry, config)?;
        let agent = ureq::AgentBuilder::new()
            .tls_config(tls)
            .redirects(0)
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(60))
            .timeout_write(Duration::from_secs(60))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(RegistryClient {
            registry: registry.to_string(),
            base,
            agent,
            credentials,
            auth: AuthState::default(),
            retry: RetryPolicy::default(),
        })
    }

    /// Replace the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The registry name this client talks to (`host[:port]`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Check that the registry speaks the v2 API, and learn how it wants to be authenticated.
    pub fn ping(&self) -> Result<()> {
        let request = Request {
            method: "GET",
            url: self.url("v2/")?,
            headers: Vec::new(),
            repository: "",
            scopes: Vec::new(),
            what: "ping /v2/".into(),
        };
        let response = self.send_with_retry(&request)?;
        match response.status() {
            200 => Ok(()),
            401 => Err(self.error("", format!("ping /v2/: credentials refused ({})", self.auth_kind()))),
            _ => Err(self.status_error(&request, response)),
        }
    }

    /// `base` joined with `path` (relative, no leading slash).
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.base.join(path).map_err(|e| self.error("", format!("bad URL path {path:?}: {e}")))
    }

    /// The registry's base URL (`scheme://host[:port]/`).
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// An error naming this registry and, when given, the repository.
    pub(crate) fn error(&self, repository: &str, message: impl Into<String>) -> Error {
        if repository.is_empty() {
            Error::Registry { registry: self.registry.clone(), message: message.into() }
        } else {
            Error::RegistryRepository { registry: self.registry.clone(), repository: repository.to_string(), message: message.into() }
        }
    }

    /// An error for an unexpected status, with the registry's own error codes when it sent them.
    pub(crate) fn status_error(&self, request: &Request<'_>, response: ureq::Response) -> Error {
        let status = response.status();
        let text = response.status_text().to_string();
        let mut body = Vec::new();
        // The body only adds detail; a read error leaves the status alone to explain.
        let _ = response.into_reader().take(64 * 1024).read_to_end(&mut body);
        let detail = registry_error_detail(&body);
        let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
        self.error(request.repository, format!("{}: {status} {text}{detail}", request.what))
    }

    /// A connection-level failure: an I/O error, which [`retrying`](Self::retrying) retries.
    pub(crate) fn transport_error(&self, request: &Request<'_>, transport: ureq::Transport) -> Error {
        let context = match self.error(request.repository, request.what.clone()) {
            Error::RegistryRepository { registry, repository, message } => {
                format!("registry {registry}, repository {repository}: {message}")
            }
            other => other.to_string(),
        };
        Error::Io { context, source: std::io::Error::other(transport.to_string()) }
    }

    fn auth_kind(&self) -> &'static str {
        match (self.auth.challenge(), self.credentials.is_some()) {
            (Some(Challenge::Basic), true) => "basic auth with the given credentials",
            (Some(Challenge::Basic), false) => "basic auth required and no credentials given",
            (Some(Challenge::Bearer { .. }), true) => "bearer token with the given credentials",
            (Some(Challenge::Bearer { .. }), false) => "bearer token, anonymous",
            (None, _) => "no usable WWW-Authenticate challenge",
        }
    }

    /// The `Authorization` value for `scopes` under the challenge learnt so far.
    fn authorization(&self, request: &Request<'_>) -> Result<Option<String>> {
        match self.auth.challenge() {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials.as_ref().map(Credentials::basic_header)),
            Some(Challenge::Bearer { realm, service, scope }) => {
                let scopes = if request.scopes.is_empty() { scope.into_iter().collect() } else { request.scopes.clone() };
                let key = scopes.join(" ");
                if let Some(token) = self.auth.cached_token(&key) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let (token, lifetime) = auth::request_token(&self.agent, &realm, service.as_deref(), &scopes, self.credentials.as_ref())
                    .map_err(|cause| self.error(request.repository, format!("{}: {cause}", request.what)))?;
                tracing::debug!(registry = %self.registry, scope = %key, ?lifetime, "got registry token");
                self.auth.store_token(&key, token.clone(), lifetime);
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn scope_key(&self, request: &Request<'_>) -> String {
        request.scopes.join(" ")
    }

    /// Send once with the given `Authorization` (or none); statuses ≥ 400 are answers, not errors.
    pub(crate) fn send_raw(
        &self,
        request: &Request<'_>,
        url: &Url,
        authorization: Option<&str>,
        body: Body<'_>,
    ) -> std::result::Result<ureq::Response, Box<ureq::Transport>> {
        let mut call = self.agent.request_url(request.method, url);
        for (name, value) in &request.headers {
            call = call.set(name, value);
        }
        if let Some(authorization) = authorization {
            call = call.set("Authorization", authorization);
        }
        let result = match body {
            Body::Empty => call.call(),
            Body::Bytes(bytes) => call.send_bytes(bytes),
            Body::Reader(reader) => call.send(reader),
        };
        match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => Ok(response),
            Err(ureq::Error::Transport(transport)) => Err(Box::new(transport)),
        }
    }

    /// Send with authentication: on a 401 learn the challenge, get a token, and send once more
    /// (a one-shot body is not resent: the 401 is an error then).
    pub(crate) fn send(&self, request: &Request<'_>, body: Body<'_>) -> Result<ureq::Response> {
        self.send_to(request, &request.url, body)
    }

    /// Like [`send`](Self::send) but to `url` (an upload location or a redirect on the same host).
    pub(crate) fn send_to(&self, request: &Request<'_>, url: &Url, body: Body<'_>) -> Result<ureq::Response> {
        let transport_error = |t: Box<ureq::Transport>| self.transport_error(request, *t);
        let authorization = self.authorization(request)?;
        let replay = match &body {
            Body::Empty => Some(None),
            Body::Bytes(bytes) => Some(Some(*bytes)),
            Body::Reader(_) => None,
        };
        let response = self.send_raw(request, url, authorization.as_deref(), body).map_err(transport_error)?;
        if response.status() != 401 {
            return Ok(response);
        }
        let Some(challenge) = response.header("WWW-Authenticate").and_then(auth::parse_www_authenticate) else {
            return Err(self.error(request.repository, format!("{}: 401 without a usable WWW-Authenticate", request.what)));
        };
        self.auth.forget_token(&self.scope_key(request));
        self.auth.set_challenge(challenge.clone());
        let Some(replay) = replay else {
            return Err(self.error(request.repository, format!("{}: authentication required mid-upload", request.what)));
        };
        if challenge == Challenge::Basic && self.credentials.is_none() {
            return Err(self.error(request.repository, format!("{}: basic auth required and no credentials given", request.what)));
        }
        let authorization = self.authorization(request)?;
        let body = replay.map_or(Body::Empty, Body::Bytes);
        let response = self.send_raw(request, url, authorization.as_deref(), body).map_err(transport_error)?;
        if response.status() == 401 {
            self.auth.forget_token(&self.scope_key(request));
            return Err(self.error(request.repository, format!("{}: access denied ({})", request.what, self.auth_kind())));
        }
        Ok(response)
    }

    /// [`send`](Self::send) with an empty body, retried with back-off on connection errors
    /// and on 5xx / 429 answers (the last answer is returned as it is).
    pub(crate) fn send_with_retry(&self, request: &Request<'_>) -> Result<ureq::Response> {
        self.retrying(request, || self.send(request, Body::Empty))
    }

    /// Run `attempt` under the retry policy: retry on errors that are not auth errors and on 5xx / 429.
    pub(crate) fn retrying(&self, request: &Request<'_>, mut attempt: impl FnMut() -> Result<ureq::Response>) -> Result<ureq::Response> {
        let mut retry = 0;
        loop {
            let last = retry + 1 >= self.retry.attempts;
            match attempt() {
                Ok(response) if !last && (response.status() >= 500 || response.status() == 429) => {
                    tracing::debug!(registry = %self.registry, what = %request.what, status = response.status(), retry, "retrying");
                }
                Ok(response) => return Ok(response),
                Err(err) if !last && is_transient(&err) => {
                    tracing::debug!(registry = %self.registry, what = %request.what, %err, retry, "retrying");
                }
                Err(err) => return Err(err),
            }
            std::thread::sleep(self.retry.backoff(retry));
            retry += 1;
        }
    }
}

/// Connection-level failures (I/O errors) are worth a retry; auth and protocol failures are not.
fn is_transient(err: &Error) -> bool {
    matches!(err, Error::Io { .. })
}

/// `{"errors":[{"code":"…","message":"…"}]}` → `CODE message; …`.
fn registry_error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(parsed) => parsed.errors.iter().map(|e| format!("{} {}", e.code, e.message).trim().to_string()).collect::<Vec<_>>().join("; "),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string(),
    }
}

/// webpki's roots, the system bundle, and the registry's `certs.d/<host>/*.crt`.
fn tls_config(registry: &str, config: &RegistryConfig) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for bundle in ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"] {
        if let Ok(pem) = std::fs::read(bundle) {
            // Unparsable system entries are skipped, as every TLS client does.
            let certs = CertificateDer::pem_slice_iter(&pem).filter_map(|c| c.ok());
            let (added, ignored) = roots.add_parsable_certificates(certs);
            tracing::trace!(bundle, added, ignored, "system CA bundle");
            break;
        }
    }
    if let Some(dir) = config.certs_dir_for(registry) {
        add_registry_cas(registry, &dir, &mut roots)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Registry { registry: registry.into(), message: format!("TLS setup: {e}") })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(tls))
}

/// Every `*.crt` in `dir` is a CA for this registry (containers' `certs.d` layout).
fn add_registry_cas(registry: &str, dir: &Path, roots: &mut rustls::RootCertStore) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Registry { registry: registry.into(), message: format!("read {}: {e}", dir.display()) }),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("crt") {
            continue;
        }
        let bad = |why: String| Error::Registry { registry: registry.into(), message: format!("CA file {}: {why}", path.display()) };
        let pem = std::fs::read(&path).map_err(|e| bad(e.to_string()))?;
        let certs: Vec<_> =
            CertificateDer::pem_slice_iter(&pem).collect::<std::result::Result<_, _>>().map_err(|e| bad(format!("{e:?}")))?;
        if certs.is_empty() {
            return Err(bad("no certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
        tracing::debug!(registry, file = %path.display(), "added registry CA");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy { attempts: 9, initial_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(1) };
        assert_eq!(policy.backoff(0), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(400));
        assert_eq!(policy.backoff(40), Duration::from_secs(1));
    }

    #[test]
    fn registry_error_bodies_are_summarised() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(registry_error_detail(body), "MANIFEST_UNKNOWN manifest unknown");
        assert_eq!(registry_error_detail(b"plain text"), "plain text");
    }

    #[test]
    fn hostile_registry_names_are_refused() {
        let config = RegistryConfig::default();
        assert!(RegistryClient::new("user@evil/", &config, None).is_err());
        assert!(RegistryClient::new("a b", &config, None).is_err());
        let hub = RegistryClient::new("docker.io", &config, None).unwrap();
        assert_eq!(hub.base().as_str(), "https://registry-1.docker.io/");
    }
}
