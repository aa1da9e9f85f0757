//! Registry authentication: `WWW-Authenticate` challenges (Bearer, Basic), token requests
//! for a scope, and a token cache that honours `expires_in`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::config::Credentials;

/// What a registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="…"`: send the credentials with every request.
    Basic,
    /// `Bearer realm=… service=… scope=…`: get a token from the realm for a scope.
    Bearer {
        /// The token endpoint URL.
        realm: String,
        /// The `service` parameter to pass to the token endpoint.
        service: Option<String>,
        /// The scope the registry suggested (used when the caller has none).
        scope: Option<String>,
    },
}

/// Parse a `WWW-Authenticate` header value; `None` if no known scheme is in it.
pub fn parse_www_authenticate(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(|c: char| c.is_ascii_whitespace()).unwrap_or((header, ""));
    let params = parse_params(rest);
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        let realm = params.get("realm")?.clone();
        return Some(Challenge::Bearer { realm, service: params.get("service").cloned(), scope: params.get("scope").cloned() });
    }
    None
}

/// `key=value, key="quoted, \"value\""` → map with lower-case keys.
fn parse_params(input: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_ascii_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    other => value.push(other),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_ascii_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.to_ascii_lowercase(), value);
    }
    params
}

/// Registry tokens last 60 s when the token server does not say (distribution spec).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Refresh a little before expiry so a token does not lapse in flight.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

struct CachedToken {
    token: String,
    expires: Instant,
}

/// The challenge a registry last sent and the tokens obtained, per scope.
#[derive(Default)]
pub(crate) struct AuthState {
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl AuthState {
    /// The challenge learnt so far.
    pub(crate) fn challenge(&self) -> Option<Challenge> {
        self.challenge.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Remember the registry's challenge.
    pub(crate) fn set_challenge(&self, challenge: Challenge) {
        *self.challenge.lock().unwrap_or_else(|p| p.into_inner()) = Some(challenge);
    }

    /// A cached, unexpired token for `scope_key`.
    pub(crate) fn cached_token(&self, scope_key: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.get(scope_key).filter(|t| t.expires > Instant::now()).map(|t| t.token.clone())
    }

    /// Cache `token` for `scope_key` for `lifetime`.
    pub(crate) fn store_token(&self, scope_key: &str, token: String, lifetime: Duration) {
        let margin = EXPIRY_MARGIN.min(lifetime / 2);
        let expires = Instant::now() + lifetime - margin;
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.retain(|_, t| t.expires > Instant::now());
        tokens.insert(scope_key.to_string(), CachedToken { token, expires });
    }

    /// Forget the token for `scope_key` (the registry refused it).
    pub(crate) fn forget_token(&self, scope_key: &str) {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner()).remove(scope_key);
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Ask the token server at `realm` for a token covering `scopes`; returns it and its lifetime.
pub(crate) fn request_token(
    agent: &ureq::Agent,
    realm: &str,
    service: Option<&str>,
    scopes: &[String],
    credentials: Option<&Credentials>,
) -> Result<(String, Duration), String> {
    let mut url = url::Url::parse(realm).map_err(|e| format!("token realm {realm:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("token realm {realm:?} is not http(s)"));
    }
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = service {
            query.append_pair("service", service);
        }
        for scope in scopes {
            query.append_pair("scope", scope);
        }
    }
    let mut request = agent.request_url("GET", &url);
    if let Some(credentials) = credentials {
        request = request.set("Authorization", &credentials.basic_header());
    }
    let response = match request.call() {
        Ok(response) => response,
        Err(ureq::Error::Status(code, _)) => {
            return Err(format!("token server {realm} answered {code} for scope {}", scopes.join(" ")));
        }
        Err(ureq::Error::Transport(t)) => return Err(format!("token server {realm}: {t}")),
    };
    let mut body = Vec::new();
    response.into_reader().take(1 << 20).read_to_end(&mut body).map_err(|e| format!("token server {realm}: reading the answer: {e}"))?;
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| format!("token server {realm}: malformed answer: {e}"))?;
    let token = parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("token server {realm}: answer has no token"))?;
    let lifetime = parsed.expires_in.filter(|s| *s > 0).map(Duration::from_secs).unwrap_or(DEFAULT_TOKEN_LIFETIME);
    Ok((token, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge_with_quoted_params() {
        let header = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#;
        assert_eq!(
            parse_www_authenticate(header),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
    }

    #[test]
    fn basic_and_unknown_and_garbage_challenges() {
        assert_eq!(parse_www_authenticate(r#"Basic realm="x""#), Some(Challenge::Basic));
        assert_eq!(parse_www_authenticate("Negotiate abc"), None);
        assert_eq!(parse_www_authenticate("Bearer service=x"), None);
        assert_eq!(parse_www_authenticate(""), None);
        assert_eq!(
            parse_www_authenticate("Bearer realm=\"unterminated"),
            Some(Challenge::Bearer { realm: "unterminated".into(), service: None, scope: None })
        );
    }

    #[test]
    fn tokens_expire() {
        let state = AuthState::default();
        state.store_token("s", "t".into(), Duration::from_secs(60));
        assert_eq!(state.cached_token("s").as_deref(), Some("t"));
        state.store_token("short", "u".into(), Duration::from_millis(2));
        std::thread::sleep(Duration::from_millis(5));
        assert!(state.cached_token("short").is_none());
    }
}
