//! The streaming server's TLS: a self-signed serving certificate kept in the agent's data dir
//! (the API server pins its SHA-256, published on the Node), and client certificates required
//! and checked against the cluster CA.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use super::StreamingError;

/// The Node annotation holding the SHA-256 (hex) of the streaming server's certificate.
pub const SERVING_CERT_ANNOTATION: &str = "skiff.dev/serving-cert-sha256";

fn tls_error<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StreamingError + '_ {
    move |e| StreamingError::Tls(format!("{what}: {e}"))
}

/// The SHA-256 of a DER certificate, lower-case hex.
pub fn serving_cert_sha256(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a file only root can read (write then rename: never half-written).
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    std::fs::rename(&tmp, path)
}

/// Makes sure `dir` holds a serving certificate for `hostnames` (names or addresses), making a
/// new one when they changed; returns its PEM and key PEM.
fn ensure_serving_cert(
    dir: &Path,
    hostnames: &[String],
) -> Result<(String, String), StreamingError> {
    std::fs::create_dir_all(dir).map_err(tls_error(&dir.display().to_string()))?;
    let (cert_path, key_path, names_path) = (
        dir.join("serving.crt"),
        dir.join("serving.key"),
        dir.join("serving.names"),
    );
    let mut names: Vec<String> = hostnames.to_vec();
    names.sort();
    names.dedup();
    let wanted = names.join("\n");
    let current = std::fs::read_to_string(&names_path).unwrap_or_default();
    if current != wanted || !cert_path.exists() || !key_path.exists() {
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(
            rcgen::DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
                Err(_) => n.clone().try_into().map(rcgen::SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .map_err(tls_error("the serving certificate's names"))?;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_after = rcgen::date_time_ymd(2036, 1, 1);
        let key = rcgen::KeyPair::generate().map_err(tls_error("generating a key"))?;
        let cert = params
            .self_signed(&key)
            .map_err(tls_error("making the serving certificate"))?;
        for (path, text) in [
            (&key_path, key.serialize_pem()),
            (&cert_path, cert.pem()),
            (&names_path, wanted),
        ] {
            write_private(path, &text).map_err(tls_error(&path.display().to_string()))?;
        }
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(tls_error(&p.display().to_string()));
    Ok((read(&cert_path)?, read(&key_path)?))
}

/// The rustls configuration of the streaming server and its certificate's SHA-256.
pub fn server_config(
    dir: &Path,
    hostnames: &[String],
    client_ca_pem: &str,
) -> Result<(Arc<rustls::ServerConfig>, String), StreamingError> {
    let (cert_pem, key_pem) = ensure_serving_cert(dir, hostnames)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(tls_error("reading the serving certificate"))?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(tls_error("reading the serving key"))?
        .ok_or_else(|| StreamingError::Tls("no private key in serving.key".into()))?;
    let sha = chain
        .first()
        .map(|c| serving_cert_sha256(c.as_ref()))
        .unwrap_or_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut client_ca_pem.as_bytes()) {
        let cert = cert.map_err(tls_error("reading the cluster CA"))?;
        roots
            .add(cert)
            .map_err(tls_error("adding the cluster CA"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(tls_error("the client certificate verifier"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error("TLS versions"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_error("the serving certificate"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), sha))
}

/// Whether the certificate's subject common name is `name`. A DER scan for the commonName
/// attribute (OID 2.5.4.3) with a string value: the issuer's name holds one too, but the
/// cluster CA's is never `name`.
pub fn common_name_is(cert: &CertificateDer<'_>, name: &str) -> bool {
    const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let der = cert.as_ref();
    der.windows(CN_OID.len())
        .enumerate()
        .filter(|(_, w)| *w == CN_OID)
        .any(|(i, _)| {
            let at = i + CN_OID.len();
            // A string type (UTF8String 0x0c, PrintableString 0x13, ...) with a short length.
            match (der.get(at), der.get(at + 1)) {
                (Some(0x0c | 0x13 | 0x16 | 0x14), Some(&len)) if len < 0x80 => der
                    .get(at + 2..at + 2 + usize::from(len))
                    .is_some_and(|v| v == name.as_bytes()),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_cert_is_made_once_and_again_for_new_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).expect("ca");
        let names = vec!["127.0.0.1".to_string(), "node-a".to_string()];
        let (_, first) = server_config(dir.path(), &names, &ca.cert.pem()).expect("config");
        let (_, again) = server_config(dir.path(), &names, &ca.cert.pem()).expect("config");
        assert_eq!(first, again);
        assert_eq!(first.len(), 64);
        let (_, other) =
            server_config(dir.path(), &["10.0.0.2".to_string()], &ca.cert.pem()).expect("config");
        assert_ne!(first, other);
    }

    #[test]
    fn common_name_of_a_certificate() {
        let mut params = rcgen::CertificateParams::default();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "kube-apiserver-kubelet-client");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let der = CertificateDer::from(cert.der().to_vec());
        assert!(common_name_is(&der, "kube-apiserver-kubelet-client"));
        assert!(!common_name_is(&der, "kube-apiserver"));
    }
}
