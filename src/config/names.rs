//! Names every config source, provider and the webhook agree on: what a file name may be, the
//! annotation prefixes, volume names, and the file of a projected token per audience. No
//! imports of the sources, so providers use them too.

/// The prefix of secretdrop's pod annotations.
pub const PREFIX: &str = "secretdrop.dev/";

/// Annotation prefix of a converted CSI volume's SecretProviderClass; the name part is the
/// volume's name (a DNS label of at most 63 characters, as Kubernetes requires of both).
pub const CSI_PREFIX: &str = "csi.secretdrop.dev/";

/// Whether Kubernetes accepts `name` as a volume name (a DNS-1123 label).
pub fn is_volume_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The file name, inside the projected token volume, of a token with this audience. The
/// webhook projects it and the sidecar reads it; the audience itself may be any string (often
/// a URL), so the name is derived from its SHA-256.
pub fn audience_token_file(audience: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, audience.as_bytes());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("token-{hex}")
}

/// The kubelet's path rules, stricter: relative, clean, no `..` element, first element not
/// starting with `..` (reserved for `..data` and version dirs), at most 4096 bytes in all and
/// 255 per element.
pub fn validate_name(name: &str) -> Result<(), String> {
    let allowed = "allowed: a relative path like \"password\" or \"tls/ca.crt\" with no \"..\", \
                   not starting with \"..\" or \"/\"";
    if name.is_empty() {
        return Err(format!("empty name; {allowed}"));
    }
    if name.len() > 4096 {
        return Err(format!("name is {} bytes long (max 4096)", name.len()));
    }
    if name.starts_with('/') {
        return Err(format!("{name:?} is absolute; {allowed}"));
    }
    if name.chars().any(|c| c.is_control() || is_deceptive(c)) {
        return Err(format!(
            "{name:?} contains a control, newline or bidirectional-override character; {allowed}"
        ));
    }
    for (i, elem) in name.split('/').enumerate() {
        if elem.is_empty() || elem == "." {
            return Err(format!(
                "{name:?} is not a clean path (empty or '.' element); {allowed}"
            ));
        }
        if elem == ".." {
            return Err(format!(
                "{name:?} traverses out of the directory with '..'; {allowed}"
            ));
        }
        if i == 0 && elem.starts_with("..") {
            return Err(format!("{name:?} starts with '..', which is reserved for the volume's own entries; {allowed}"));
        }
        if elem.len() > 255 {
            return Err(format!("{name:?} has an element longer than 255 bytes"));
        }
    }
    Ok(())
}

/// Characters that make a file name lie about itself in a terminal or a log: bidi controls
/// (U+202A..U+202E, U+2066..U+2069, marks) and line/paragraph separators.
fn is_deceptive(c: char) -> bool {
    matches!(
        c,
        '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{2028}' | '\u{2029}'
    ) || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}
