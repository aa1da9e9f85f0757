//! The registry client: distribution API v2, token and basic auth, TLS.
