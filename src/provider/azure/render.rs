//! Pure: an [`AzureSnapshot`] to a [`Payload`], as the Azure provider writes files
//! (docs/azure.md, "What is written"): secrets as stored (then `objectEncoding`),
//! certificate-backed secrets as PEM (private keys, then the chain leaf first) or PFX, keys as
//! PKIX public key PEM, certificates as PEM; with `objectVersionHistory` a directory per
//! object, `0` the newest. Errors name the object and version, never content.

use base64::Engine;
use zeroize::Zeroizing;

use crate::render::{FileContent, Payload, PayloadBuilder, RenderError};
use crate::secret::SecretBytes;

use super::fetch::{AzureSnapshot, Raw};
use super::pem;
use super::pkcs12;
use super::spec::{describe, AzureSpec, ObjectEncoding, ObjectFormat};

const PEM_FILE: &str = "application/x-pem-file";
const PFX_FILE: &str = "application/x-pkcs12";

pub fn render(spec: &AzureSpec, snapshot: &AzureSnapshot) -> Result<Payload, RenderError> {
    let mut out = PayloadBuilder::default();
    for (o, fetched) in spec.objects.iter().zip(&snapshot.objects) {
        for (i, (version, raw)) in fetched.versions.iter().enumerate() {
            let err = |message: String| RenderError {
                object: o.file.clone(),
                path: format!("{} version {version}", describe(o)),
                message,
            };
            let bytes = content(raw, o.format, o.encoding).map_err(err)?;
            let name = match o.history {
                Some(_) => format!("{}/{i}", o.file),
                None => o.file.clone(),
            };
            out.reserve(bytes.len()).map_err(err)?;
            out.insert(
                name,
                FileContent {
                    data: SecretBytes::new(bytes.to_vec()),
                    mode: o.mode,
                    owner: None,
                    group: None,
                },
            )
            .map_err(err)?;
        }
    }
    Ok(out.finish())
}

/// One version's file content.
fn content(
    raw: &Raw,
    format: ObjectFormat,
    encoding: ObjectEncoding,
) -> Result<Zeroizing<Vec<u8>>, String> {
    match raw {
        Raw::Key(jwk) => pem::public_key_pem(&jwk.jwk()).map(Zeroizing::new),
        Raw::Cert(der) => Ok(Zeroizing::new(pem::encode("CERTIFICATE", der))),
        Raw::Secret {
            value,
            content_type,
            cert_backed,
        } => {
            let text: Zeroizing<Vec<u8>> = if !cert_backed {
                Zeroizing::new(value.expose().as_bytes().to_vec())
            } else {
                match content_type.as_deref() {
                    Some(PEM_FILE) => Zeroizing::new(value.expose().as_bytes().to_vec()),
                    Some(PFX_FILE) if format == ObjectFormat::Pfx => {
                        Zeroizing::new(value.expose().as_bytes().to_vec())
                    }
                    Some(PFX_FILE) => pfx_to_pem(value.expose())?,
                    other => {
                        return Err(format!(
                            "the certificate's secret has content type {:?}; {PEM_FILE} and \
                             {PFX_FILE} are known",
                            crate::net::http::network_text(other.unwrap_or(""), 100)
                        ))
                    }
                }
            };
            decode(text, encoding)
        }
    }
}

/// `objectEncoding` applied to a secret's text.
fn decode(
    text: Zeroizing<Vec<u8>>,
    encoding: ObjectEncoding,
) -> Result<Zeroizing<Vec<u8>>, String> {
    match encoding {
        ObjectEncoding::Utf8 => Ok(text),
        ObjectEncoding::Base64 => {
            // As Go's decoder: line breaks are skipped, padding is required.
            let compact: Zeroizing<Vec<u8>> = Zeroizing::new(
                text.iter()
                    .copied()
                    .filter(|b| *b != b'\r' && *b != b'\n')
                    .collect(),
            );
            base64::engine::general_purpose::STANDARD
                .decode(&*compact)
                .map(Zeroizing::new)
                .map_err(|_| "objectEncoding base64: the value is not standard base64".into())
        }
        ObjectEncoding::Hex => {
            if text.len() % 2 != 0 {
                return Err("objectEncoding hex: the value has an odd number of digits".into());
            }
            let digit = |b: u8| (b as char).to_digit(16);
            let mut out = Zeroizing::new(Vec::with_capacity(text.len() / 2));
            for pair in text.chunks(2) {
                match (digit(pair[0]), digit(pair[1])) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err("objectEncoding hex: the value is not hexadecimal".into()),
                }
            }
            Ok(out)
        }
    }
}

/// A certificate's PFX (base64 text) as PEM: every private key as PKCS#8, then every
/// certificate, the chain leaf first.
fn pfx_to_pem(value: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let pfx = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .map_err(|_| "the certificate's PFX is not base64".to_string())?,
    );
    let contents = pkcs12::open(&pfx).map_err(|e| format!("the certificate's PFX: {e}"))?;
    let mut out = Zeroizing::new(Vec::new());
    for key in &contents.keys {
        let der = Zeroizing::new(
            pem::normalize_pkcs8(key).map_err(|e| format!("the certificate's private key: {e}"))?,
        );
        out.extend_from_slice(&Zeroizing::new(pem::encode("PRIVATE KEY", &der)));
    }
    for cert in pem::chain_order(contents.certs)? {
        out.extend_from_slice(&pem::encode("CERTIFICATE", &cert));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::SecretString;

    fn secret(v: &str) -> Raw {
        Raw::Secret {
            value: SecretString::new(v.into()),
            content_type: None,
            cert_backed: false,
        }
    }

    #[test]
    fn encodings_decode_as_the_provider_does() {
        let b64 = content(
            &secret("aGVs\nbG8="),
            ObjectFormat::Pem,
            ObjectEncoding::Base64,
        )
        .unwrap();
        assert_eq!(b64.as_slice(), b"hello");
        assert!(content(
            &secret("aGVsbG8"),
            ObjectFormat::Pem,
            ObjectEncoding::Base64
        )
        .is_err());
        let hex = content(
            &secret("68656C6c6f"),
            ObjectFormat::Pem,
            ObjectEncoding::Hex,
        )
        .unwrap();
        assert_eq!(hex.as_slice(), b"hello");
        assert!(content(&secret("6g"), ObjectFormat::Pem, ObjectEncoding::Hex).is_err());
        assert!(content(&secret("686"), ObjectFormat::Pem, ObjectEncoding::Hex).is_err());
        let plain = content(
            &secret("  as is\n"),
            ObjectFormat::Pem,
            ObjectEncoding::Utf8,
        )
        .unwrap();
        assert_eq!(plain.as_slice(), b"  as is\n");
    }

    #[test]
    fn a_certificate_secret_of_unknown_type_is_refused_without_its_value() {
        let raw = Raw::Secret {
            value: SecretString::new("topsecretvalue".into()),
            content_type: Some("text/plain".into()),
            cert_backed: true,
        };
        let e = content(&raw, ObjectFormat::Pem, ObjectEncoding::Utf8).unwrap_err();
        assert!(e.contains("text/plain") && !e.contains("topsecret"), "{e}");
        let pfx = Raw::Secret {
            value: SecretString::new("TUlJ".into()),
            content_type: Some(PFX_FILE.into()),
            cert_backed: true,
        };
        assert_eq!(
            content(&pfx, ObjectFormat::Pfx, ObjectEncoding::Utf8)
                .unwrap()
                .as_slice(),
            b"TUlJ",
            "pfx: the base64 text as stored"
        );
        assert_eq!(
            content(&pfx, ObjectFormat::Pfx, ObjectEncoding::Base64)
                .unwrap()
                .as_slice(),
            b"MII",
            "pfx + base64: the binary PFX"
        );
    }
}
