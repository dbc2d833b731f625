//! The rustls client configuration for talking to Vault: CA file or directory (replacing the
//! system roots, as the Vault CLI does), the system bundle otherwise, a TLS server name that
//! differs from the address host, a client certificate, and an explicit skip-verify.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::spec::TlsSettings;

/// Where distributions (and distroless) keep the CA bundle; `SSL_CERT_FILE` comes first.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A TLS setup problem: a file that cannot be read or holds no usable PEM.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {message}")]
pub struct TlsSetupError {
    pub what: &'static str,
    pub path: PathBuf,
    pub message: String,
}

fn setup_err(what: &'static str, path: &Path, message: impl Into<String>) -> TlsSetupError {
    TlsSetupError {
        what,
        path: path.to_path_buf(),
        message: message.into(),
    }
}

pub fn client_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup_err("TLS", Path::new("-"), e.to_string()))?;

    let builder = if tls.skip_verify {
        tracing::warn!(
            "TLS certificate verification is disabled (skip-verify): use only for testing"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let roots = Arc::new(root_store(tls)?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| setup_err("CA certificates", Path::new("-"), e.to_string()))?;
        match &tls.server_name {
            Some(name) => {
                let name = ServerName::try_from(name.clone()).map_err(|_| {
                    setup_err(
                        "TLS server name",
                        Path::new(name),
                        "not a valid DNS name or IP address",
                    )
                })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(FixedName {
                        inner: webpki,
                        name,
                    }))
            }
            None => builder.with_webpki_verifier(webpki),
        }
    };

    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert, "client certificate")?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                setup_err("client key", key, format!("no usable PEM private key: {e}"))
            })?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| setup_err("client certificate", cert, e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn root_store(tls: &TlsSettings) -> Result<RootCertStore, TlsSetupError> {
    let mut store = RootCertStore::empty();
    if tls.ca_cert.is_none() && tls.ca_directory.is_none() && tls.ca_pem.is_none() {
        let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
        let found = env
            .into_iter()
            .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
            .find(|p| p.is_file());
        if let Some(bundle) = found {
            add_all(&mut store, &read_certs(&bundle, "CA bundle")?);
        }
        return Ok(store);
    }
    if let Some(file) = &tls.ca_cert {
        add_all(&mut store, &read_certs(file, "CA certificate file")?);
    }
    if let Some(pem) = &tls.ca_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| {
                setup_err(
                    "CA certificate",
                    Path::new("secretdrop.dev/ca-cert"),
                    e.to_string(),
                )
            })?;
        add_all(&mut store, &certs);
    }
    if let Some(dir) = &tls.ca_directory {
        let entries =
            std::fs::read_dir(dir).map_err(|e| setup_err("CA directory", dir, e.to_string()))?;
        let before = store.len();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() {
                if let Ok(certs) = read_certs(&path, "CA certificate file") {
                    add_all(&mut store, &certs);
                }
            }
        }
        if store.len() == before {
            return Err(setup_err("CA directory", dir, "holds no PEM certificate"));
        }
    }
    Ok(store)
}

fn add_all(store: &mut RootCertStore, certs: &[CertificateDer<'static>]) {
    for cert in certs {
        // A bundle may hold certificates webpki cannot use; skip them as the Vault CLI does.
        let _ = store.add(cert.clone());
    }
}

fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|e| setup_err(what, path, e.to_string()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| setup_err(what, path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(setup_err(what, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// Verifies the chain against a configured name instead of the address host (`tlsServerName`).
#[derive(Debug)]
struct FixedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `skipTLSVerify: true`: accepts any certificate, still checks handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
