//! The node join token and node credentials, shared by the server (which makes the token) and the
//! agent (which reads it): `K10<sha256 of the CA certificate>::server:<secret>`, k3s' shape, so
//! one string both authenticates the joining node and pins the cluster's CA.

use sha2::Digest as _;

/// The prefix of a token that carries the CA's hash (the same as k3s', so the shape is familiar).
const PREFIX: &str = "K10";
/// The user part of the server's join token.
const SERVER_USER: &str = "server";
/// The prefix of a node's own bearer token: `node:<node name>:<password>`.
const NODE_PREFIX: &str = "node:";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token starts with K10 but is not K10<64 hex digits>::<user>:<secret>: {0}")]
    Malformed(&'static str),
}

/// A join token as given to `skiff agent --token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinToken {
    /// The sha256 (64 lower-case hex digits) of the CA certificate the server serves, when the
    /// token carries it.
    pub ca_hash: Option<String>,
    /// What the agent presents as bearer token to obtain its credentials: `server:<secret>` for
    /// a full token, or the whole token when it is opaque (the admin token, a bare secret).
    pub credential: String,
}

impl JoinToken {
    /// The token for a server whose CA certificate is `ca_pem` (the exact bytes it serves) and
    /// whose join secret is `secret`.
    pub fn new(ca_pem: &[u8], secret: &str) -> JoinToken {
        JoinToken {
            ca_hash: Some(ca_hash(ca_pem)),
            credential: format!("{SERVER_USER}:{secret}"),
        }
    }

    /// Reads a token: `K10<hash>::<user>:<secret>` is split into the CA hash and the credential;
    /// anything else is an opaque credential (the CA is then trusted some other way).
    pub fn parse(text: &str) -> Result<JoinToken, TokenError> {
        let text = text.trim();
        let Some(rest) = text.strip_prefix(PREFIX) else {
            return Ok(JoinToken {
                ca_hash: None,
                credential: text.to_string(),
            });
        };
        let (hash, credential) = rest
            .split_once("::")
            .ok_or(TokenError::Malformed("no `::` after the CA hash"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Malformed(
                "the CA hash is not 64 hex digits (a sha256)",
            ));
        }
        match credential.split_once(':') {
            Some((user, secret)) if !user.is_empty() && !secret.is_empty() => {}
            _ => return Err(TokenError::Malformed("no <user>:<secret> after `::`")),
        }
        Ok(JoinToken {
            ca_hash: Some(hash.to_ascii_lowercase()),
            credential: credential.to_string(),
        })
    }

    /// Whether `ca_pem` (as the server served it) is the CA this token names. A token without a
    /// hash pins nothing and matches any CA.
    pub fn matches_ca(&self, ca_pem: &[u8]) -> bool {
        self.ca_hash
            .as_deref()
            .is_none_or(|hash| hash == ca_hash(ca_pem))
    }
}

impl std::fmt::Display for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ca_hash {
            Some(hash) => write!(f, "{PREFIX}{hash}::{}", self.credential),
            None => f.write_str(&self.credential),
        }
    }
}

/// The sha256 of `bytes`, as 64 lower-case hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = sha2::Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for byte in digest.iter() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

/// The hash a token carries for the CA certificate `ca_pem`.
pub fn ca_hash(ca_pem: &[u8]) -> String {
    sha256_hex(ca_pem)
}

/// The bearer token of node `node_name` with its `password`.
pub fn node_bearer_token(node_name: &str, password: &str) -> String {
    format!("{NODE_PREFIX}{node_name}:{password}")
}

/// The node name and password of a node's bearer token, if `token` is one. Node names are DNS
/// subdomains, so they hold no `:`.
pub fn parse_node_bearer_token(token: &str) -> Option<(&str, &str)> {
    let (name, password) = token.strip_prefix(NODE_PREFIX)?.split_once(':')?;
    if name.is_empty() || password.is_empty() {
        return None;
    }
    Some((name, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn a_full_token_round_trips_and_pins_the_ca() {
        let token = JoinToken::new(CA, "s3cret");
        let text = token.to_string();
        assert!(text.starts_with("K10"), "{text}");
        assert!(text.ends_with("::server:s3cret"), "{text}");
        assert_eq!(text.len(), 3 + 64 + 2 + "server:s3cret".len());
        let parsed = JoinToken::parse(&format!("  {text}\n")).expect("parses");
        assert_eq!(parsed, token);
        assert_eq!(parsed.credential, "server:s3cret");
        assert!(parsed.matches_ca(CA));
        assert!(!parsed.matches_ca(b"another CA"));
    }

    #[test]
    fn the_ca_hash_is_the_sha256_of_the_served_bytes() {
        // sha256("abc"), a published test vector.
        assert_eq!(
            ca_hash(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn an_opaque_token_is_a_credential_without_a_ca_hash() {
        let parsed = JoinToken::parse("0123abcd").expect("parses");
        assert_eq!(parsed.ca_hash, None);
        assert_eq!(parsed.credential, "0123abcd");
        assert!(parsed.matches_ca(b"anything"));
        assert_eq!(parsed.to_string(), "0123abcd");
    }

    #[test]
    fn malformed_k10_tokens_are_refused_with_the_reason() {
        let hash = ca_hash(CA);
        for (text, why) in [
            ("K10abc::server:x", "64 hex"),
            (&format!("K10{hash}server:x") as &str, "`::`"),
            (&format!("K10{hash}::server"), "<user>:<secret>"),
            (&format!("K10{hash}::server:"), "<user>:<secret>"),
            (&format!("K10{}::server:x", "z".repeat(64)), "64 hex"),
        ] {
            let err = JoinToken::parse(text).expect_err(text);
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
        // Upper-case hex is accepted and compared lower-case.
        let upper = format!("K10{}::server:x", hash.to_ascii_uppercase());
        assert!(JoinToken::parse(&upper).expect("parses").matches_ca(CA));
    }

    #[test]
    fn node_bearer_tokens_name_their_node() {
        let token = node_bearer_token("worker-1.example", "abc");
        assert_eq!(token, "node:worker-1.example:abc");
        assert_eq!(
            parse_node_bearer_token(&token),
            Some(("worker-1.example", "abc"))
        );
        assert_eq!(parse_node_bearer_token("node::abc"), None);
        assert_eq!(parse_node_bearer_token("node:a:"), None);
        assert_eq!(parse_node_bearer_token("server:abc"), None);
    }
}
