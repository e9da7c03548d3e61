//! Bearer-token authentication and the admin kubeconfig written at first start.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate a random token: {0}")]
    Random(String),
    #[error("the token file {path} is empty or malformed; remove it to generate a new one")]
    Malformed { path: PathBuf },
}

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// The tokens the server accepts.
#[derive(Clone, Debug)]
pub struct Authenticator {
    admin_token: String,
}

impl Authenticator {
    /// Loads the admin token from `<data-dir>/token`, generating it at first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, AuthError> {
        let path = data_dir.join("token");
        let admin_token = match fs::read_to_string(&path) {
            Ok(text) => {
                let token = text.trim().to_string();
                if token.len() < 16 {
                    return Err(AuthError::Malformed { path });
                }
                token
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = random_token()?;
                write_private(&path, &format!("{token}\n"))?;
                token
            }
            Err(source) => return Err(AuthError::Io { path, source }),
        };
        Ok(Authenticator { admin_token })
    }

    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The user behind an `Authorization` header value, if the token is known.
    pub fn authenticate(&self, authorization: Option<&str>) -> Option<User> {
        let header = authorization?;
        let (scheme, token) = header.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        if constant_time_eq(token.trim().as_bytes(), self.admin_token.as_bytes()) {
            Some(User {
                name: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            })
        } else {
            None
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_token() -> Result<String, AuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, contents: &str) -> Result<(), AuthError> {
    crate::tls::write_private(path, contents).map_err(|source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `<data-dir>/admin.kubeconfig` for `server_url` and returns its path.
pub fn write_admin_kubeconfig(
    data_dir: &Path,
    server_url: &str,
    ca_pem: &str,
    token: &str,
) -> Result<PathBuf, AuthError> {
    let path = data_dir.join("admin.kubeconfig");
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\n\
         contexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: admin\ncurrent-context: skiff\n\
         users:\n- name: admin\n  user:\n    token: {token}\npreferences: {{}}\n"
    );
    write_private(&path, &text)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_stable_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Authenticator::load_or_create(dir.path()).expect("create");
        let b = Authenticator::load_or_create(dir.path()).expect("load");
        assert_eq!(a.admin_token(), b.admin_token());
        assert_eq!(a.admin_token().len(), 64);
        let header = format!("Bearer {}", a.admin_token());
        assert!(a.authenticate(Some(&header)).is_some());
        assert!(a.authenticate(Some("Bearer wrong")).is_none());
        assert!(a
            .authenticate(Some(&format!("Basic {}", a.admin_token())))
            .is_none());
        assert!(a.authenticate(None).is_none());
    }
}
