//! AWS Signature Version 4 (header form): canonical request, string to sign, signing key,
//! `Authorization` header. Unit-tested against vectors of AWS's published SigV4 test suite.
//!
//! Invariants: the secret key only enters the HMAC chain; the session token is a signed
//! header (`x-amz-security-token`, the suite's "header before" variant, which every service
//! accepts); nothing here logs or formats a key.

use std::fmt;
use std::time::SystemTime;

use ring::{digest, hmac};

use crate::secret::SecretString;

/// Signing keys. `Debug` shows none of them.
#[derive(Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
    pub expires: Option<SystemTime>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys(<redacted>, expires {:?})", self.expires)
    }
}

/// A request to sign. `path` is the raw (unencoded) path; `query` the raw pairs.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(String, String)],
    /// Header names in any case; repeated names are joined in order, as the suite requires.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

/// Where the signature is valid.
pub struct Scope<'a> {
    pub region: &'a str,
    pub service: &'a str,
    /// `YYYYMMDDTHHMMSSZ`, the same as the request's `X-Amz-Date`.
    pub amz_date: &'a str,
}

pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

/// RFC 3986 percent-encoding of everything but the unreserved characters; `/` kept when
/// encoding a path.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let mut merged: Vec<(String, String)> = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        // Trim, and fold runs of spaces into one (the suite's get-header-value-trim).
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match merged.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push(',');
                v.push_str(&value);
            }
            None => merged.push((name, value)),
        }
    }
    merged.sort_by(|a, b| a.0.cmp(&b.0));
    let canonical = merged.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let signed = merged
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (canonical, signed)
}

fn canonical_query(query: &[(String, String)]) -> String {
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical request and the signed-header list.
pub fn canonical_request(req: &Request<'_>) -> (String, String) {
    let (headers, signed) = canonical_headers(req.headers);
    let path = if req.path.is_empty() { "/" } else { req.path };
    let creq = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(path, true),
        canonical_query(req.query),
        headers,
        signed,
        sha256_hex(req.body)
    );
    (creq, signed)
}

pub fn string_to_sign(creq: &str, scope: &Scope<'_>) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{}\n{}/{}/{}/aws4_request\n{}",
        scope.amz_date,
        &scope.amz_date[..8.min(scope.amz_date.len())],
        scope.region,
        scope.service,
        sha256_hex(creq.as_bytes())
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// The `Authorization` header value for `req` (which must already carry `host`, `x-amz-date`
/// and, with temporary keys, `x-amz-security-token`).
pub fn authorization(req: &Request<'_>, keys: &Keys, scope: &Scope<'_>) -> String {
    let (creq, signed) = canonical_request(req);
    let sts = string_to_sign(&creq, scope);
    let date = &scope.amz_date[..8.min(scope.amz_date.len())];
    let k_secret = zeroize::Zeroizing::new(format!("AWS4{}", keys.secret_access_key.expose()));
    let k_date = hmac_sha256(k_secret.as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(k_date.as_ref(), scope.region.as_bytes());
    let k_service = hmac_sha256(k_region.as_ref(), scope.service.as_bytes());
    let k_signing = hmac_sha256(k_service.as_ref(), b"aws4_request");
    let signature = hmac_sha256(k_signing.as_ref(), sts.as_bytes());
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{}/{}/aws4_request, SignedHeaders={signed}, Signature={}",
        keys.access_key_id,
        scope.region,
        scope.service,
        hex(signature.as_ref())
    )
}

#[cfg(test)]
mod tests {
    //! Vectors from AWS's Signature Version 4 test suite (the `.req` request, and its `.creq`,
    //! `.sts` and `.authz` where given), for the suite's example key, region and service.
    use super::*;
    use crate::secret::SecretString;

    fn keys() -> Keys {
        Keys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: None,
            expires: None,
        }
    }

    const SCOPE: Scope<'static> = Scope {
        region: "us-east-1",
        service: "service",
        amz_date: "20150830T123600Z",
    };

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn base(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v = h(&[("Host", "example.amazonaws.com")]);
        v.extend(h(extra));
        v.extend(h(&[("X-Amz-Date", "20150830T123600Z")]));
        v
    }

    fn sig(
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: Vec<(String, String)>,
        body: &[u8],
    ) -> String {
        let query = h(query);
        let req = Request {
            method,
            path,
            query: &query,
            headers: &headers,
            body,
        };
        authorization(&req, &keys(), &SCOPE)
    }

    fn authz(signed: &str, signature: &str) -> String {
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={signature}")
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        assert_eq!(
            sig(
                "GET",
                "/",
                &[("Param2", "value2"), ("Param1", "value1")],
                base(&[]),
                b""
            ),
            authz(
                "host;x-amz-date",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn get_vanilla_utf8_query() {
        assert_eq!(
            sig("GET", "/", &[("\u{1234}", "bar")], base(&[]), b""),
            authz(
                "host;x-amz-date",
                "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"
            )
        );
    }

    #[test]
    fn get_unreserved() {
        assert_eq!(
            sig(
                "GET",
                "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
                &[],
                base(&[]),
                b""
            ),
            authz(
                "host;x-amz-date",
                "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"
            )
        );
    }

    #[test]
    fn get_header_value_trim() {
        assert_eq!(
            sig(
                "GET",
                "/",
                &[],
                base(&[("My-Header1", " value1"), ("My-Header2", " \"a   b   c\"")]),
                b""
            ),
            authz(
                "host;my-header1;my-header2;x-amz-date",
                "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"
            )
        );
    }

    #[test]
    fn get_header_key_duplicate() {
        assert_eq!(
            sig(
                "GET",
                "/",
                &[],
                base(&[
                    ("My-Header1", "value2"),
                    ("My-Header1", "value2"),
                    ("My-Header1", "value1")
                ]),
                b""
            ),
            authz(
                "host;my-header1;x-amz-date",
                "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"
            )
        );
    }

    #[test]
    fn post_sts_header_before() {
        let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
        let mut headers = base(&[]);
        headers.push(("X-Amz-Security-Token".into(), token.into()));
        assert_eq!(
            sig("POST", "/", &[], headers, b""),
            authz(
                "host;x-amz-date;x-amz-security-token",
                "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"
            )
        );
    }

    #[test]
    fn post_x_www_form_urlencoded_each_step() {
        let headers = h(&[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]);
        let req = Request {
            method: "POST",
            path: "/",
            query: &[],
            headers: &headers,
            body: b"Param1=value1",
        };
        let (creq, _) = canonical_request(&req);
        assert_eq!(
            creq,
            "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
        );
        assert_eq!(
            string_to_sign(&creq, &SCOPE),
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281"
        );
        assert_eq!(
            authorization(&req, &keys(), &SCOPE),
            authz(
                "content-type;host;x-amz-date",
                "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
            )
        );
    }
}
