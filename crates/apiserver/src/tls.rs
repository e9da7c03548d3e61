//! The cluster CA and the API server's serving certificate: generated at first start, kept in the
//! data dir, reused afterwards.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot load TLS material from {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
}

/// The CA and serving certificate as PEM files under `<data-dir>/tls`.
pub struct TlsFiles {
    pub dir: PathBuf,
    pub ca_pem: String,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a file only root can read, atomically (write, fsync, rename), so a crash never leaves
/// a half-written key or token behind. Shared by the TLS material and the credentials.
pub(crate) fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

fn write_secret(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_private(path, contents).map_err(io_err(path))
}

/// Makes sure the CA and serving certificate exist, generating what is missing. `sans` are the
/// extra names and addresses the serving certificate is valid for (localhost and 127.0.0.1 are
/// always included).
pub fn ensure(data_dir: &Path, sans: &[String]) -> Result<TlsFiles, TlsError> {
    let dir = data_dir.join("tls");
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let ca_cert_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");

    if !ca_cert_path.exists() || !ca_key_path.exists() {
        let key = KeyPair::generate()?;
        let params = ca_params();
        let cert = params.self_signed(&key)?;
        write_secret(&ca_key_path, &key.serialize_pem())?;
        write_secret(&ca_cert_path, &cert.pem())?;
        // A new CA invalidates any serving certificate signed by an old one.
        let _ = fs::remove_file(&cert_path);
    }

    let ca_pem = fs::read_to_string(&ca_cert_path).map_err(io_err(&ca_cert_path))?;
    let wanted = wanted_sans(sans);
    let sans_path = dir.join("server.sans");
    let current_sans = fs::read_to_string(&sans_path).unwrap_or_default();
    if !cert_path.exists() || !key_path.exists() || current_sans != wanted.join("\n") {
        let ca_key_pem = fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        // The issuer needs only the CA's name, key usages and key, which `ca_params` rebuilds.
        let issuer = rcgen::Issuer::new(ca_params(), ca_key);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "skiff-apiserver");
        params.distinguished_name = dn;
        params.subject_alt_names = wanted
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.signed_by(&key, &issuer)?;
        write_secret(&key_path, &key.serialize_pem())?;
        write_secret(&cert_path, &cert.pem())?;
        write_secret(&sans_path, &wanted.join("\n"))?;
    }
    Ok(TlsFiles { dir, ca_pem })
}

/// The common name of the API server's client certificate for the nodes' streaming servers.
pub const KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

/// Makes sure `<data-dir>/tls/kubelet-client.{crt,key}` exist: the client certificate the API
/// server presents to nodes' streaming servers, signed by the cluster CA (which [`ensure`] made).
/// Returns the certificate and key PEM.
pub fn ensure_kubelet_client(data_dir: &Path) -> Result<(String, String), TlsError> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("kubelet-client.crt");
    let key_path = dir.join("kubelet-client.key");
    let ca_cert_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    // Issued by this CA? A new CA (its files replaced) means a new client certificate.
    let issued_by = dir.join("kubelet-client.ca");
    let ca_pem = fs::read_to_string(&ca_cert_path).map_err(io_err(&ca_cert_path))?;
    let current = fs::read_to_string(&issued_by).unwrap_or_default();
    if current != ca_pem || !cert_path.exists() || !key_path.exists() {
        let ca_key_pem = fs::read_to_string(&ca_key_path).map_err(io_err(&ca_key_path))?;
        let issuer = rcgen::Issuer::new(ca_params(), KeyPair::from_pem(&ca_key_pem)?);
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, KUBELET_CLIENT_CN);
        dn.push(DnType::OrganizationName, "system:masters");
        params.distinguished_name = dn;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let cert = params.signed_by(&key, &issuer)?;
        write_secret(&key_path, &key.serialize_pem())?;
        write_secret(&cert_path, &cert.pem())?;
        write_secret(&issued_by, &ca_pem)?;
    }
    let cert = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
    let key = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
    Ok((cert, key))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    params
}

fn wanted_sans(extra: &[String]) -> Vec<String> {
    let mut all: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        "kubernetes".into(),
        "kubernetes.default".into(),
    ];
    if let Ok(host) = fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            all.push(host.to_string());
        }
    }
    for s in extra {
        if !s.is_empty() && s != "0.0.0.0" && s != "::" {
            all.push(s.clone());
        }
    }
    all.sort();
    all.dedup();
    all
}

/// The rustls server configuration for the serving certificate (HTTP/1.1 only).
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_path = files.dir.join("server.crt");
    let key_path = files.dir.join("server.key");
    let cert_pem = fs::read(&cert_path).map_err(io_err(&cert_path))?;
    let key_pem = fs::read(&key_path).map_err(io_err(&key_path))?;
    let mut chain = Vec::new();
    for cert in rustls_pemfile::certs(&mut cert_pem.as_slice()) {
        chain.push(cert.map_err(|e| TlsError::Load {
            path: cert_path.clone(),
            message: e.to_string(),
        })?);
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| TlsError::Load {
            path: key_path.clone(),
            message: e.to_string(),
        })?
        .ok_or_else(|| TlsError::Load {
            path: key_path.clone(),
            message: "no private key in file".into(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = ensure(dir.path(), &[]).expect("first");
        let cert1 = fs::read_to_string(dir.path().join("tls/server.crt")).expect("cert");
        let second = ensure(dir.path(), &[]).expect("second");
        let cert2 = fs::read_to_string(dir.path().join("tls/server.crt")).expect("cert");
        assert_eq!(first.ca_pem, second.ca_pem);
        assert_eq!(cert1, cert2);
        server_config(&second).expect("rustls accepts the generated certificate");
        // A new SAN re-issues the serving certificate under the same CA.
        let third = ensure(dir.path(), &["10.1.2.3".into()]).expect("third");
        let cert3 = fs::read_to_string(dir.path().join("tls/server.crt")).expect("cert");
        assert_eq!(third.ca_pem, first.ca_pem);
        assert_ne!(cert3, cert1);
    }
}
