//! Opening the PFX (PKCS#12) of a certificate-backed Key Vault secret with the empty password
//! (docs/azure.md, "Certificates and keys"): what Key Vault exports, 3DES
//! (`pbeWithSHAAnd3-KeyTripleDES-CBC`) bags under a SHA-1 MAC, in DER.
//!
//! Invariants: the MAC is verified (in constant time) before anything is decrypted; the empty
//! password is tried in both encodings PKCS#12 writers use (two zero bytes, or none), as Go's
//! reader does; iteration counts and bag counts are bounded, so a hostile PFX costs bounded
//! CPU; nothing decrypted outlives the call unzeroed; errors never quote the content.

use zeroize::Zeroizing;

use super::der::{self, oids, Reader};

/// More iterations than this are refused (Key Vault uses 2000; each is one SHA-1 block).
const MAX_ITERATIONS: u64 = 200_000;
/// More bags than this are refused.
const MAX_BAGS: usize = 256;

/// What a PFX holds, in bag order: PKCS#8 private keys and DER certificates.
pub struct Contents {
    pub keys: Vec<Zeroizing<Vec<u8>>>,
    pub certs: Vec<Vec<u8>>,
}

/// The keys and certificates of `pfx`, opened with the empty password.
pub fn open(pfx: &[u8]) -> Result<Contents, String> {
    let mut r = Reader::new(pfx);
    let mut top = r.nested(der::SEQUENCE, "PFX")?;
    if !r.is_empty() {
        return Err("bytes after the PFX".into());
    }
    if top.small_uint("PFX version")? != 3 {
        return Err("PFX version is not 3".into());
    }
    let auth_safe = data_content(&mut top.nested(der::SEQUENCE, "authSafe")?)?;
    let mac = top
        .optional(der::SEQUENCE)?
        .ok_or("the PFX has no MAC (only password-integrity PFX files are read)")?;
    // The empty password: BMPString with its terminator, or nothing at all.
    let password = [&[0u8, 0][..], &[][..]]
        .into_iter()
        .find(|pw| verify_mac(mac.value, auth_safe, pw).unwrap_or(false))
        .ok_or_else(|| {
            verify_mac(mac.value, auth_safe, &[0, 0])
                .err()
                .unwrap_or_else(|| "its MAC does not verify with the empty password: the PFX has a password, or it was altered (Key Vault's have none)".into())
        })?;
    let mut out = Contents {
        keys: Vec::new(),
        certs: Vec::new(),
    };
    let mut bags = 0usize;
    let mut infos = Reader::new(auth_safe).nested(der::SEQUENCE, "AuthenticatedSafe")?;
    while !infos.is_empty() {
        let mut info = infos.nested(der::SEQUENCE, "ContentInfo")?;
        let kind = info.expect(der::OID, "ContentInfo type")?.value;
        let safe: Zeroizing<Vec<u8>> = if kind == oids::DATA {
            let mut explicit = info.nested(der::CTX0, "ContentInfo content")?;
            Zeroizing::new(explicit.expect(der::OCTET_STRING, "data")?.value.to_vec())
        } else if kind == oids::ENCRYPTED_DATA {
            let mut explicit = info.nested(der::CTX0, "ContentInfo content")?;
            let mut ed = explicit.nested(der::SEQUENCE, "EncryptedData")?;
            ed.small_uint("EncryptedData version")?;
            let mut eci = ed.nested(der::SEQUENCE, "EncryptedContentInfo")?;
            eci.expect(der::OID, "content type")?;
            let alg = eci.expect(der::SEQUENCE, "content encryption algorithm")?;
            let enc = eci.expect(der::CTX0_PRIMITIVE, "encrypted content")?;
            decrypt(alg.value, enc.value, password)?
        } else {
            return Err("a PFX content is neither data nor encryptedData (public-key privacy is not supported)".into());
        };
        let mut safe_bags = Reader::new(&safe).nested(der::SEQUENCE, "SafeContents")?;
        while !safe_bags.is_empty() {
            bags += 1;
            if bags > MAX_BAGS {
                return Err(format!("the PFX holds more than {MAX_BAGS} bags"));
            }
            let mut bag = safe_bags.nested(der::SEQUENCE, "SafeBag")?;
            let id = bag.expect(der::OID, "bag type")?.value;
            let mut value = bag.nested(der::CTX0, "bag value")?;
            if id == oids::KEY_BAG {
                out.keys.push(Zeroizing::new(
                    value.expect(der::SEQUENCE, "key")?.raw.to_vec(),
                ));
            } else if id == oids::SHROUDED_KEY_BAG {
                let mut epki = value.nested(der::SEQUENCE, "EncryptedPrivateKeyInfo")?;
                let alg = epki.expect(der::SEQUENCE, "key encryption algorithm")?;
                let enc = epki.expect(der::OCTET_STRING, "encrypted key")?;
                out.keys.push(decrypt(alg.value, enc.value, password)?);
            } else if id == oids::CERT_BAG {
                let mut cb = value.nested(der::SEQUENCE, "CertBag")?;
                if cb.expect(der::OID, "certificate type")?.value != oids::X509_CERT {
                    return Err("a certificate bag holds no X.509 certificate".into());
                }
                let mut v = cb.nested(der::CTX0, "certificate value")?;
                out.certs
                    .push(v.expect(der::OCTET_STRING, "certificate")?.value.to_vec());
            }
            // Other bags (CRLs, secrets, nested contents) carry nothing the provider writes.
        }
    }
    Ok(out)
}

/// The octets of a `data` ContentInfo.
fn data_content<'a>(info: &mut Reader<'a>) -> Result<&'a [u8], String> {
    if info.expect(der::OID, "authSafe type")?.value != oids::DATA {
        return Err("the PFX authSafe is not data (public-key integrity is not supported)".into());
    }
    let mut explicit = info.nested(der::CTX0, "authSafe content")?;
    Ok(explicit.expect(der::OCTET_STRING, "authSafe data")?.value)
}

/// Whether `mac_data` (MacData's content) verifies `content` with `password`.
fn verify_mac(mac_data: &[u8], content: &[u8], password: &[u8]) -> Result<bool, String> {
    let mut m = Reader::new(mac_data);
    let mut digest_info = m.nested(der::SEQUENCE, "MAC")?;
    let mut alg = digest_info.nested(der::SEQUENCE, "MAC algorithm")?;
    if alg.expect(der::OID, "MAC algorithm")?.value != oids::SHA1 {
        return Err("the PFX MAC is not SHA-1 (Key Vault's is)".into());
    }
    let digest = digest_info.expect(der::OCTET_STRING, "MAC digest")?.value;
    let salt = m.expect(der::OCTET_STRING, "MAC salt")?.value;
    let iterations = if m.is_empty() {
        1
    } else {
        m.small_uint("MAC iterations")?
    };
    let key = kdf(password, salt, 3, iterations, 20)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    Ok(ring::hmac::verify(&key, content, digest).is_ok())
}

/// Decrypts `data` under the PBE algorithm `alg` (AlgorithmIdentifier content).
fn decrypt(alg: &[u8], data: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, String> {
    use des::cipher::{BlockDecrypt, KeyInit};
    let mut a = Reader::new(alg);
    if a.expect(der::OID, "encryption algorithm")?.value != oids::PBE_SHA1_3DES {
        return Err(
            "a PFX bag is not encrypted with pbeWithSHAAnd3-KeyTripleDES-CBC (the one Key Vault \
             uses; RC2 and PBES2 are not supported)"
                .into(),
        );
    }
    let mut params = a.nested(der::SEQUENCE, "PBE parameters")?;
    let salt = params.expect(der::OCTET_STRING, "PBE salt")?.value;
    let iterations = params.small_uint("PBE iterations")?;
    let key = kdf(password, salt, 1, iterations, 24)?;
    let iv = kdf(password, salt, 2, iterations, 8)?;
    if data.is_empty() || data.len() % 8 != 0 {
        return Err("encrypted PFX content is not whole 3DES blocks".into());
    }
    let cipher = des::TdesEde3::new_from_slice(&key).map_err(|_| "3DES key")?;
    let mut out = Zeroizing::new(data.to_vec());
    let mut prev = [0u8; 8];
    prev.copy_from_slice(&iv);
    for block in out.chunks_exact_mut(8) {
        let mut saved = [0u8; 8];
        saved.copy_from_slice(block);
        cipher.decrypt_block(block.into());
        for (b, p) in block.iter_mut().zip(prev) {
            *b ^= p;
        }
        prev = saved;
    }
    let pad = *out.last().unwrap_or(&0) as usize;
    if pad == 0 || pad > 8 || out[out.len() - pad..].iter().any(|b| *b as usize != pad) {
        return Err("the PFX does not decrypt with the empty password".into());
    }
    let len = out.len() - pad;
    out.truncate(len);
    Ok(out)
}

/// The PKCS#12 key derivation (RFC 7292, appendix B.2) with SHA-1: `n` bytes for purpose `id`
/// (1 key, 2 IV, 3 MAC).
fn kdf(
    password: &[u8],
    salt: &[u8],
    id: u8,
    iterations: u64,
    n: usize,
) -> Result<Zeroizing<Vec<u8>>, String> {
    const U: usize = 20;
    const V: usize = 64;
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(format!(
            "the PFX asks for {iterations} key derivation iterations (at most {MAX_ITERATIONS})"
        ));
    }
    let repeat = |s: &[u8]| -> Vec<u8> {
        if s.is_empty() {
            return Vec::new();
        }
        let len = V * s.len().div_ceil(V);
        s.iter().cycle().take(len).copied().collect()
    };
    let mut i_buf = Zeroizing::new([repeat(salt), repeat(password)].concat());
    let d = [id; V];
    let mut out = Zeroizing::new(Vec::with_capacity(n + U));
    while out.len() < n {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(&d);
        ctx.update(&i_buf);
        let mut a = ctx.finish();
        for _ in 1..iterations {
            a = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, a.as_ref());
        }
        out.extend_from_slice(a.as_ref());
        if out.len() >= n {
            break;
        }
        // I_j = (I_j + B + 1) mod 2^(8v), B = A repeated to v bytes.
        let b: Vec<u8> = a.as_ref().iter().cycle().take(V).copied().collect();
        for chunk in i_buf.chunks_mut(V) {
            let mut carry = 1u16;
            for k in (0..V).rev() {
                let sum = chunk[k] as u16 + b[k] as u16 + carry;
                chunk[k] = sum as u8;
                carry = sum >> 8;
            }
        }
    }
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kdf_matches_rfc_7292_vectors() {
        // From the PKCS#12 test vectors widely used by implementations (password "smeg").
        let pw: Vec<u8> = "smeg\0"
            .encode_utf16()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        let salt = [0x0a, 0x58, 0xcf, 0x64, 0x53, 0x0d, 0x82, 0x3f];
        let key = kdf(&pw, &salt, 1, 1, 24).unwrap();
        assert_eq!(
            key.as_slice(),
            [
                0x8a, 0xaa, 0xe6, 0x29, 0x7b, 0x6c, 0xb0, 0x46, 0x42, 0xab, 0x5b, 0x07, 0x78, 0x51,
                0x28, 0x4e, 0xb7, 0x12, 0x8f, 0x1a, 0x2a, 0x7f, 0xbc, 0xa3
            ]
        );
        let iv = kdf(&pw, &salt, 2, 1, 8).unwrap();
        assert_eq!(
            iv.as_slice(),
            [0x79, 0x99, 0x3d, 0xfe, 0x04, 0x8d, 0x3b, 0x76]
        );
        assert!(kdf(&pw, &salt, 1, MAX_ITERATIONS + 1, 24).is_err());
    }

    #[test]
    fn garbage_and_truncations_are_refused_without_panicking() {
        assert!(open(b"").is_err());
        assert!(open(&[0x30, 0x03, 0x02, 0x01, 0x03]).is_err());
        let mut x = vec![0x30, 0x82, 0x01, 0x00];
        x.extend(std::iter::repeat_n(0x30, 256));
        assert!(open(&x).is_err());
    }
}
