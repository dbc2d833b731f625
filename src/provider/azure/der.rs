//! A small DER reader and writer: what the key, certificate and PKCS#12 code of this provider
//! needs, nothing more (docs/azure.md, "Certificates and keys").
//!
//! Invariants: the reader never reads past its input, accepts only definite lengths in their
//! shortest form (DER), and limits nesting by the recursion of its callers (each structure is
//! read by a fixed function, never by generic recursion); the writer emits DER lengths.

/// Tags used here.
pub const INTEGER: u8 = 0x02;
pub const BIT_STRING: u8 = 0x03;
pub const OCTET_STRING: u8 = 0x04;
pub const NULL: u8 = 0x05;
pub const OID: u8 = 0x06;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
/// `[0]` constructed (EXPLICIT), `[1]` constructed, `[0]` primitive (IMPLICIT).
pub const CTX0: u8 = 0xa0;
pub const CTX1: u8 = 0xa1;
pub const CTX0_PRIMITIVE: u8 = 0x80;

/// A cursor over DER bytes.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    data: &'a [u8],
}

/// One element: its tag, its content, and its whole encoding.
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub value: &'a [u8],
    pub raw: &'a [u8],
}

pub type Result<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// The next element, whatever its tag.
    pub fn any(&mut self) -> Result<Tlv<'a>> {
        let d = self.data;
        if d.len() < 2 {
            return Err("truncated DER".into());
        }
        let tag = d[0];
        if tag & 0x1f == 0x1f {
            return Err("DER tags above 30 are not used here".into());
        }
        let (len, head) = match d[1] {
            n if n < 0x80 => (n as usize, 2),
            0x80 => return Err("indefinite length (BER) is not DER".into()),
            n => {
                let count = (n & 0x7f) as usize;
                if count > 4 || d.len() < 2 + count {
                    return Err("DER length too long".into());
                }
                let mut len = 0usize;
                for &b in &d[2..2 + count] {
                    len = (len << 8) | b as usize;
                }
                if len < 0x80 || d[2] == 0 {
                    return Err("DER length not in its shortest form".into());
                }
                (len, 2 + count)
            }
        };
        let end = head.checked_add(len).ok_or("DER length overflows")?;
        if d.len() < end {
            return Err("truncated DER".into());
        }
        self.data = &d[end..];
        Ok(Tlv {
            tag,
            value: &d[head..end],
            raw: &d[..end],
        })
    }

    /// The next element, which must have `tag`.
    pub fn expect(&mut self, tag: u8, what: &str) -> Result<Tlv<'a>> {
        let t = self.any().map_err(|e| format!("{what}: {e}"))?;
        if t.tag != tag {
            return Err(format!(
                "{what}: expected tag {tag:#04x}, found {:#04x}",
                t.tag
            ));
        }
        Ok(t)
    }

    /// The content of the next element with `tag`, as a reader.
    pub fn nested(&mut self, tag: u8, what: &str) -> Result<Reader<'a>> {
        Ok(Reader::new(self.expect(tag, what)?.value))
    }

    /// The next element if it has `tag`.
    pub fn optional(&mut self, tag: u8) -> Result<Option<Tlv<'a>>> {
        match self.peek_tag() {
            Some(t) if t == tag => self.any().map(Some),
            _ => Ok(None),
        }
    }

    /// A small non-negative INTEGER.
    pub fn small_uint(&mut self, what: &str) -> Result<u64> {
        let v = self.expect(INTEGER, what)?.value;
        if v.is_empty() || v.len() > 8 || v[0] & 0x80 != 0 {
            return Err(format!("{what}: not a small non-negative integer"));
        }
        Ok(v.iter().fold(0u64, |a, &b| (a << 8) | b as u64))
    }
}

/// One element with `tag` and `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A SEQUENCE of the given encoded elements.
pub fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(SEQUENCE, &parts.concat())
}

/// A non-negative INTEGER from big-endian magnitude bytes (leading zeros dropped, a zero
/// byte added when the top bit is set).
pub fn uint(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let m = &magnitude[skip..];
    let mut content = Vec::with_capacity(m.len() + 1);
    if m.is_empty() || m[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(m);
    tlv(INTEGER, &content)
}

/// A BIT STRING with no unused bits.
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(bytes.len() + 1);
    content.push(0);
    content.extend_from_slice(bytes);
    tlv(BIT_STRING, &content)
}

/// Object identifiers used here, as their DER content bytes.
pub mod oids {
    /// 1.2.840.113549.1.1.1 rsaEncryption
    pub const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.2.840.10045.2.1 id-ecPublicKey
    pub const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7 prime256v1
    pub const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// 1.3.132.0.34 secp384r1
    pub const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
    /// 1.3.132.0.35 secp521r1
    pub const P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];
    /// 1.2.840.113549.1.7.1 data
    pub const DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01];
    /// 1.2.840.113549.1.7.6 encryptedData
    pub const ENCRYPTED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06];
    /// 1.2.840.113549.1.12.10.1.1 keyBag
    pub const KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x01,
    ];
    /// 1.2.840.113549.1.12.10.1.2 pkcs8ShroudedKeyBag
    pub const SHROUDED_KEY_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x02,
    ];
    /// 1.2.840.113549.1.12.10.1.3 certBag
    pub const CERT_BAG: &[u8] = &[
        0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x0a, 0x01, 0x03,
    ];
    /// 1.2.840.113549.1.9.22.1 x509Certificate
    pub const X509_CERT: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x16, 0x01];
    /// 1.2.840.113549.1.12.1.3 pbeWithSHAAnd3-KeyTripleDES-CBC
    pub const PBE_SHA1_3DES: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x0c, 0x01, 0x03];
    /// 1.3.14.3.2.26 sha1
    pub const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
    /// 2.5.29.14 subjectKeyIdentifier
    pub const SKI: &[u8] = &[0x55, 0x1d, 0x0e];
    /// 2.5.29.35 authorityKeyIdentifier
    pub const AKI: &[u8] = &[0x55, 0x1d, 0x23];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip_and_non_der_is_refused() {
        for n in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let enc = tlv(OCTET_STRING, &vec![7; n]);
            let t = Reader::new(&enc).any().unwrap();
            assert_eq!(t.value.len(), n);
            assert_eq!(t.raw.len(), enc.len());
        }
        assert!(
            Reader::new(&[0x30, 0x80, 0, 0]).any().is_err(),
            "indefinite"
        );
        assert!(
            Reader::new(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5])
                .any()
                .is_err(),
            "long form of a short length"
        );
        assert!(Reader::new(&[0x04, 0x05, 1]).any().is_err(), "truncated");
        assert!(
            Reader::new(&[0x04, 0x85, 1, 0, 0, 0, 0]).any().is_err(),
            "5-byte length"
        );
        assert_eq!(uint(&[0, 0, 0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint(&[1, 0]), vec![0x02, 0x02, 0x01, 0x00]);
        assert_eq!(uint(&[]), vec![0x02, 0x01, 0x00]);
    }
}
