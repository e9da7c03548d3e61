//! Credentials for a pull read from a docker `config.json` (`$DOCKER_CONFIG`), against a real
//! registry with basic authentication. A test binary of its own: it sets an environment
//! variable, which would race with the other pull tests' threads.
#![allow(clippy::unwrap_used)]

mod common;

use common::oci::{self, file, Compression};
use common::registry::{Auth, Registry};
use skiff_runtime::image::pull::{self, PullOptions};
use skiff_runtime::image::reference::Reference;
use skiff_runtime::image::store::ImageStore;

/// The same test user as in `pull.rs` (bcrypt cost 4 of `skiff-test-password`).
const TEST_PASSWORD: &str = "skiff-test-password";
const TEST_BCRYPT: &str = "$2b$04$cGBjeRgpPeHrnnuw5f3Mb.09N3ofMwqHXudQqEX1Hmk151XGWpZfe";

#[tokio::test(flavor = "multi_thread")]
async fn credentials_from_docker_config() {
    use base64::Engine as _;

    let config_dir = tempfile::tempdir().unwrap();
    // Set before anything else runs in this binary (its only test), so no thread reads the
    // environment meanwhile.
    std::env::set_var("DOCKER_CONFIG", config_dir.path());

    let registry = Registry::start_with(Auth::Htpasswd {
        user: "tester".into(),
        bcrypt: TEST_BCRYPT.into(),
    });
    let image = oci::image(
        "amd64",
        vec![oci::layer(
            &[file("hello", b"from config.json\n")],
            Compression::Gzip,
        )],
    );
    let layout = tempfile::tempdir().unwrap();
    oci::write_oci_image(layout.path(), "t", &image);
    registry.push_oci(
        layout.path(),
        "t",
        "private:1",
        Some(&format!("tester:{TEST_PASSWORD}")),
    );
    let reference = Reference::parse(&registry.reference("private:1")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = ImageStore::open(data.path()).unwrap();

    // No config.json: anonymous, refused.
    let err = pull::pull(&store, &reference, &PullOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("requires authentication"), "{err}");

    // `docker login` writes the registry's host:port with base64 of user:password.
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("tester:{TEST_PASSWORD}"));
    std::fs::write(
        config_dir.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    let record = pull::pull(&store, &reference, &PullOptions::default())
        .await
        .unwrap();
    assert_eq!(record.id.to_string(), image.config_digest);
    assert_eq!(
        std::fs::read_to_string(store.layer_dirs(&record)[0].join("hello")).unwrap(),
        "from config.json\n"
    );
}
