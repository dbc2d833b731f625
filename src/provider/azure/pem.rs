//! Keys and certificates as the Azure provider writes them (docs/azure.md, "What is written"):
//! PEM as Go's `pem.EncodeToMemory` spells it, public keys as PKIX `PUBLIC KEY` from Key
//! Vault's JWK, private keys re-encoded as Go's `MarshalPKCS8PrivateKey` does, and a chain put
//! in order leaf → intermediates → root by its key identifiers.
//!
//! Invariants: pure functions of their input; every refusal says what was expected and never
//! quotes key material.

use base64::Engine;

use super::der::{self, oids, Reader};

/// `-----BEGIN LABEL-----`, standard base64 in lines of 64, `-----END LABEL-----`, each line
/// ending with `\n`.
pub fn encode(label: &str, der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = Vec::with_capacity(b64.len() + b64.len() / 64 + 64);
    out.extend_from_slice(format!("-----BEGIN {label}-----\n").as_bytes());
    for line in b64.as_bytes().chunks(64) {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.extend_from_slice(format!("-----END {label}-----\n").as_bytes());
    out
}

/// The fields of a Key Vault JWK that make a public key.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Jwk {
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub kty: String,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

/// A named curve: its OID and the byte size of a coordinate.
fn curve(name: &str) -> Option<(&'static [u8], usize)> {
    match name {
        "P-256" => Some((oids::P256, 32)),
        "P-384" => Some((oids::P384, 48)),
        "P-521" => Some((oids::P521, 66)),
        _ => None,
    }
}

fn curve_of_oid(oid: &[u8]) -> Option<usize> {
    [(oids::P256, 32), (oids::P384, 48), (oids::P521, 66)]
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, n)| *n)
}

/// `bytes` without leading zeros, left-padded to `size`; None when larger.
fn fixed(bytes: &[u8], size: usize) -> Option<Vec<u8>> {
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let m = &bytes[skip..];
    if m.len() > size {
        return None;
    }
    let mut out = vec![0u8; size - m.len()];
    out.extend_from_slice(m);
    Some(out)
}

/// The PKIX `PUBLIC KEY` PEM of a JWK: RSA (`RSA`, `RSA-HSM`) or EC (`EC`, `EC-HSM` on P-256,
/// P-384, P-521).
pub fn public_key_pem(jwk: &Jwk) -> Result<Vec<u8>, String> {
    let b64 = |field: &str, v: &Option<String>| -> Result<Vec<u8>, String> {
        let v = v
            .as_deref()
            .ok_or_else(|| format!("the key has no {field:?}"))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|_| format!("the key's {field:?} is not base64url"))
    };
    let spki = match jwk.kty.as_str() {
        "RSA" | "RSA-HSM" => {
            let n = b64("n", &jwk.n)?;
            let e = b64("e", &jwk.e)?;
            if n.iter().all(|b| *b == 0) || e.iter().all(|b| *b == 0) || e.len() > 8 {
                return Err("the key's RSA modulus or exponent is not valid".into());
            }
            let rsa = der::sequence(&[&der::uint(&n), &der::uint(&e)]);
            let alg = der::sequence(&[&der::tlv(der::OID, oids::RSA), &der::tlv(der::NULL, &[])]);
            der::sequence(&[&alg, &der::bit_string(&rsa)])
        }
        "EC" | "EC-HSM" => {
            let name = jwk.crv.as_deref().unwrap_or("");
            let (oid, size) = curve(name).ok_or_else(|| {
                format!("the key's curve {name:?} is not supported: P-256, P-384 and P-521 are")
            })?;
            let x = fixed(&b64("x", &jwk.x)?, size).ok_or("the key's x is too long")?;
            let y = fixed(&b64("y", &jwk.y)?, size).ok_or("the key's y is too long")?;
            let point = [&[4u8][..], &x, &y].concat();
            let alg = der::sequence(&[&der::tlv(der::OID, oids::EC), &der::tlv(der::OID, oid)]);
            der::sequence(&[&alg, &der::bit_string(&point)])
        }
        other => {
            return Err(format!(
                "key type {:?} has no public key PEM: RSA and EC keys do",
                crate::net::http::network_text(other, 20)
            ))
        }
    };
    Ok(encode("PUBLIC KEY", &spki))
}

/// A PKCS#8 `PrivateKeyInfo` (RSA or EC) re-encoded as Go's `MarshalPKCS8PrivateKey` writes
/// it: version 0, no attributes; RSA's parameters NULL and its PKCS#1 key with the nine
/// standard integers; EC's curve in the algorithm, its `ECPrivateKey` without parameters, the
/// scalar padded to the curve size, and the public key.
pub fn normalize_pkcs8(info: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = Reader::new(info);
    let mut seq = r.nested(der::SEQUENCE, "PrivateKeyInfo")?;
    seq.small_uint("PrivateKeyInfo version")?;
    let mut alg = seq.nested(der::SEQUENCE, "private key algorithm")?;
    let oid = alg.expect(der::OID, "private key algorithm")?.value;
    let params = if alg.is_empty() {
        None
    } else {
        Some(alg.any()?)
    };
    let key = seq.expect(der::OCTET_STRING, "private key")?.value;
    if oid == oids::RSA {
        let mut k = Reader::new(key).nested(der::SEQUENCE, "RSA private key")?;
        let version = k.small_uint("RSA private key version")?;
        if version != 0 {
            return Err("multi-prime RSA keys are not supported".into());
        }
        let mut ints = Vec::new();
        for what in ["n", "e", "d", "p", "q", "dp", "dq", "qinv"] {
            let v = k.expect(der::INTEGER, what)?.value;
            if v.first().is_some_and(|b| b & 0x80 != 0) {
                return Err(format!("RSA key field {what} is negative"));
            }
            ints.push(der::uint(v));
        }
        let mut parts: Vec<&[u8]> = vec![&[0x02, 0x01, 0x00]];
        parts.extend(ints.iter().map(Vec::as_slice));
        let pkcs1 = der::sequence(&parts);
        let alg = der::sequence(&[&der::tlv(der::OID, oids::RSA), &der::tlv(der::NULL, &[])]);
        return Ok(der::sequence(&[
            &[0x02, 0x01, 0x00],
            &alg,
            &der::tlv(der::OCTET_STRING, &pkcs1),
        ]));
    }
    if oid == oids::EC {
        let mut k = Reader::new(key).nested(der::SEQUENCE, "EC private key")?;
        if k.small_uint("EC private key version")? != 1 {
            return Err("EC private key version is not 1".into());
        }
        let scalar = k.expect(der::OCTET_STRING, "EC private key")?.value;
        let inner_curve = match k.optional(der::CTX0)? {
            Some(t) => Some(Reader::new(t.value).expect(der::OID, "EC curve")?.value),
            None => None,
        };
        let public = match k.optional(der::CTX1)? {
            Some(t) => {
                Reader::new(t.value)
                    .expect(der::BIT_STRING, "EC public key")?
                    .value
            }
            None => return Err("the EC private key carries no public key".into()),
        };
        let curve_oid = match params {
            Some(p) if p.tag == der::OID => p.value,
            _ => inner_curve.ok_or("the EC private key names no curve")?,
        };
        let size = curve_of_oid(curve_oid)
            .ok_or("the EC key's curve is not supported: P-256, P-384 and P-521 are")?;
        // BIT STRING content: unused-bits byte 0, then 04 || X || Y.
        if public.len() != 2 + 2 * size || public[0] != 0 || public[1] != 4 {
            return Err("the EC public key is not an uncompressed point of its curve".into());
        }
        let scalar = fixed(scalar, size).ok_or("the EC private key is longer than its curve")?;
        let ec = der::sequence(&[
            &[0x02, 0x01, 0x01],
            &der::tlv(der::OCTET_STRING, &scalar),
            &der::tlv(der::CTX1, &der::bit_string(&public[1..])),
        ]);
        let alg = der::sequence(&[
            &der::tlv(der::OID, oids::EC),
            &der::tlv(der::OID, curve_oid),
        ]);
        return Ok(der::sequence(&[
            &[0x02, 0x01, 0x00],
            &alg,
            &der::tlv(der::OCTET_STRING, &ec),
        ]));
    }
    Err("the private key is neither RSA nor EC".into())
}

/// A certificate's subject and authority key identifiers (empty when absent).
fn key_ids(cert: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    let mut c = Reader::new(cert).nested(der::SEQUENCE, "certificate")?;
    let mut tbs = c.nested(der::SEQUENCE, "tbsCertificate")?;
    tbs.optional(der::CTX0)?; // version
    for what in [
        "serial",
        "signature",
        "issuer",
        "validity",
        "subject",
        "public key",
    ] {
        tbs.any().map_err(|e| format!("certificate {what}: {e}"))?;
    }
    let (mut ski, mut aki) = (Vec::new(), Vec::new());
    while let Some(tag) = tbs.peek_tag() {
        let t = tbs.any()?;
        if tag != 0xa3 {
            continue;
        }
        let mut exts = Reader::new(t.value).nested(der::SEQUENCE, "extensions")?;
        while !exts.is_empty() {
            let mut ext = exts.nested(der::SEQUENCE, "extension")?;
            let id = ext.expect(der::OID, "extension id")?.value;
            ext.optional(0x01)?; // critical
            let value = ext.expect(der::OCTET_STRING, "extension value")?.value;
            if id == oids::SKI {
                ski = Reader::new(value)
                    .expect(der::OCTET_STRING, "subject key identifier")?
                    .value
                    .to_vec();
            } else if id == oids::AKI {
                let mut a = Reader::new(value).nested(der::SEQUENCE, "authority key identifier")?;
                if let Some(k) = a.optional(der::CTX0_PRIMITIVE)? {
                    aki = k.value.to_vec();
                }
            }
        }
    }
    Ok((ski, aki))
}

/// Certificates in chain order, leaf → intermediates → root, as the provider orders them:
/// each certificate's issuer is the first other one whose subject key id equals its authority
/// key id; the leaf is the first that issues none; when following issuers from the leaf does
/// not reach every certificate, the given order is kept.
pub fn chain_order(certs: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, String> {
    let ids = certs
        .iter()
        .map(|c| key_ids(c))
        .collect::<Result<Vec<_>, _>>()?;
    let n = certs.len();
    let mut parent = vec![None; n];
    let mut is_parent = vec![false; n];
    for i in 0..n {
        for j in 0..n {
            if i != j && ids[i].1 == ids[j].0 {
                is_parent[j] = true;
                parent[i] = Some(j);
                break;
            }
        }
    }
    let mut order = Vec::new();
    let mut seen = vec![false; n];
    let mut at = (0..n).find(|&i| !is_parent[i]);
    while let Some(i) = at {
        // A cycle of links never reaches every certificate exactly once.
        if std::mem::replace(&mut seen[i], true) {
            break;
        }
        order.push(i);
        at = parent[i];
    }
    if order.len() != n {
        return Ok(certs);
    }
    let mut slots: Vec<Option<Vec<u8>>> = certs.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

#[cfg(test)]
mod tests;
