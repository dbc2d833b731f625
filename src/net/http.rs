//! What the HTTP clients (Vault, the AWS provider, the Kubernetes API, the app's notify URL)
//! share: the client settings none of them may differ in, reading an answer's body within a
//! byte bound, and saying why a request failed.

use std::time::Duration;

use zeroize::Zeroizing;

/// A client builder with what every secretdrop client keeps: no proxy from the environment
/// (a token must not travel through one), no Referer, our User-Agent, idle connections kept
/// 90 s, `connect_timeout`; redirects as `redirects` says (callers holding tokens follow none,
/// or only within their origin).
pub fn builder(
    connect_timeout: Duration,
    redirects: reqwest::redirect::Policy,
) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("secretdrop/", env!("CARGO_PKG_VERSION")))
        .redirect(redirects)
        .referer(false)
        .no_proxy()
}

/// Longest text from a peer that a message quotes (an error's code or message, a Status).
pub const MAX_NETWORK_TEXT: usize = 300;

/// Text a peer sent (Vault's `errors`, an AWS error code or message, a Kubernetes Status
/// message), made fit for a log line and a terminal: control characters (ESC, BEL, CR, NUL,
/// DEL, the C1 range) and the characters that make text lie about itself (bidirectional
/// overrides, line and paragraph separators) are shown escaped (`\u{1b}`), never passed on;
/// at most `max` characters are kept, and a cut says so. The one sanitizer every message built
/// from a network answer goes through.
pub fn network_text(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (kept, c) in text.chars().enumerate() {
        if kept == max {
            out.push_str(&format!("… ({} characters in all)", text.chars().count()));
            break;
        }
        let deceptive = matches!(
            c,
            '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{2028}' | '\u{2029}'
        ) || ('\u{202A}'..='\u{202E}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c);
        if c.is_control() || deceptive {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a body was not read whole.
pub enum BodyError {
    /// Announced or found to be larger than the limit; nothing was kept.
    TooBig,
    /// The connection failed while reading.
    Transport(reqwest::Error),
}

/// The body, read chunk by chunk, refused as soon as it passes `limit` bytes: a huge answer
/// costs at most `limit` of memory, never its announced or actual size. Zeroed on drop (bodies
/// hold secrets and credentials), including what was read before a refusal.
pub async fn read_bounded(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooBig);
    }
    // Sized up front where the server says, so growth leaves no stray copies behind.
    let hint = resp.content_length().unwrap_or(0).min(limit as u64) as usize;
    let mut body = Zeroizing::new(Vec::with_capacity(hint));
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooBig);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why a request got no answer: the error's causes joined, and whether a certificate check or
/// a fatal TLS alert failed it (no more transient than a certificate that does not verify).
pub struct Failure {
    pub cause: String,
    pub tls: bool,
}

/// `err` and its sources as one text; with `skip_top`, from the first source on (the top error
/// only says "error sending request for url (...)", for callers that name the URL themselves).
pub fn failure(err: &reqwest::Error, skip_top: bool) -> Failure {
    let mut cause = String::new();
    let top: &(dyn std::error::Error + 'static) = err;
    let mut source = match skip_top {
        true => top.source().or(Some(top)),
        false => Some(top),
    };
    let mut tls = false;
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            tls = tls || is_cert_error(r);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(r) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                tls = tls || is_cert_error(r);
            }
        }
        let text = e.to_string();
        // rustls errors can sit inside io::Error layers that hide them from `source()`; their
        // text is stable (`invalid peer certificate: ...`).
        tls = tls
            || [
                "invalid peer certificate",
                "peer sent no certificates",
                "received fatal alert",
            ]
            .iter()
            .any(|m| text.contains(m));
        if !cause.contains(&text) {
            if !cause.is_empty() {
                cause.push_str(": ");
            }
            cause.push_str(&text);
        }
        source = e.source();
    }
    if err.is_timeout() && !cause.contains("timed out") {
        cause.push_str(" (timed out)");
    }
    // What rustls says when the first bytes back are not a TLS record, as a plain-HTTP server
    // answers a ClientHello.
    if cause.contains("InvalidContentType") {
        cause.push_str(
            " (the server did not answer in TLS: if it serves plain HTTP, like a Vault dev \
             server, its address starts with http://, not https://)",
        );
    }
    Failure { cause, tls }
}

fn is_cert_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_text_escapes_control_and_deceptive_characters_and_is_capped() {
        let hostile = "\u{1b}[31mred\u{7}\r\nnext\u{0}\u{9b}2J\u{202e}gnp.exe";
        let shown = network_text(hostile, 100);
        assert!(
            !shown.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "{shown:?}"
        );
        assert_eq!(
            shown,
            "\\u{1b}[31mred\\u{7}\\u{d}\\u{a}next\\u{0}\\u{9b}2J\\u{202e}gnp.exe"
        );
        let long = "x".repeat(10_000);
        let cut = network_text(&long, 300);
        assert!(cut.starts_with(&"x".repeat(300)));
        assert!(cut.ends_with("… (10000 characters in all)"), "{cut}");
        assert!(cut.chars().count() < 340);
        assert_eq!(network_text("permission denied", 300), "permission denied");
    }
}
