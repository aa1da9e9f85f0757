//! A bearer-token realm for `docker-registry`'s `auth: token:` section: it grants every
//! requested action as an ES256 JWT whose `x5c` holds a self-signed cert (the registry's
//! `rootcertbundle`).

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use super::{respond, FakeServer};

/// A running token server.
pub struct TokenServer {
    /// `127.0.0.1:<port>`
    pub host: String,
    /// The signing certificate, PEM: the registry's `rootcertbundle`.
    pub cert_pem: String,
    granted: Arc<Mutex<Vec<String>>>,
    _server: FakeServer,
}

impl TokenServer {
    /// Start a realm for `service` signed as `issuer`; with `credentials`, Basic auth is required.
    pub fn start(service: &str, issuer: &str, credentials: Option<(&str, &str)>) -> TokenServer {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "berth token signer");
        let cert = params.self_signed(&key).unwrap();
        let rng = SystemRandom::new();
        let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng).unwrap();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [STANDARD.encode(cert.der())]});
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        let expected_auth = credentials.map(|(u, p)| format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))));
        let granted = Arc::new(Mutex::new(Vec::new()));
        let granted_in = granted.clone();
        let (service, issuer) = (service.to_string(), issuer.to_string());
        let server = FakeServer::start(Box::new(move |request, index, stream| {
            if expected_auth.is_some() && request.header("authorization") != expected_auth.as_deref() {
                respond(stream, "401 Unauthorized", &[], b"{\"details\":\"bad credentials\"}");
                return;
            }
            let query = request.target.split_once('?').map(|(_, q)| q).unwrap_or("");
            let mut access = Vec::new();
            for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
                if name != "scope" {
                    continue;
                }
                let parts: Vec<&str> = value.splitn(3, ':').collect();
                if let [kind, repo, actions] = parts.as_slice() {
                    access.push(serde_json::json!({"type": kind, "name": repo, "actions": actions.split(',').collect::<Vec<_>>()}));
                    granted_in.lock().unwrap().push(value.to_string());
                }
            }
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
            let claims = serde_json::json!({
                "iss": issuer, "sub": "bob", "aud": service, "exp": now + 300, "nbf": now - 10, "iat": now,
                "jti": format!("token-{index}"), "access": access,
            });
            let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()));
            let signature = signer.sign(&rng, input.as_bytes()).unwrap();
            let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
            let body = serde_json::json!({"token": token, "expires_in": 300});
            respond(stream, "200 OK", &[("Content-Type", "application/json".into())], &serde_json::to_vec(&body).unwrap());
        }));
        TokenServer { host: server.host.clone(), cert_pem: cert.pem(), granted, _server: server }
    }

    /// Every scope a token was granted for, in order.
    pub fn scopes_requested(&self) -> Vec<String> {
        self.granted.lock().unwrap().clone()
    }
}
