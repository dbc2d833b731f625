//! Vault's render: a [`VaultSpec`] and its answers in, a [`Payload`] out. No I/O, so every
//! format is unit-tested here.
//!
//! Semantics follow the vault-csi-provider (docs/configuration.md, "A SecretProviderClass,
//! verbatim"): with `secretKey` the value is looked up in `data.data` when that is a map (KV v2)
//! and in `data` otherwise; strings are written raw, other values as JSON; `encoding` decodes
//! base64/hex. Without `secretKey` (and no format or template) the whole response is written as
//! JSON. A missing key is an error that names the object, the path and the keys that do exist,
//! never a value. The payload is bounded by [`PayloadBuilder`] (see `crate::render`).

use base64::Engine;
use serde_json::Value;

use crate::render::{
    dotenv_quote, is_env_name, BoundedWriter, FileContent, Payload, PayloadBuilder, RenderError,
};
use crate::secret::SecretBytes;

use super::go_render;
use super::spec::{Encoding, Format, ObjectSpec, Output, Read, VaultSpec};

/// Every object of `spec` from `responses`, one answer per read of the spec, in its order.
pub fn render(spec: &VaultSpec, responses: &[&Value]) -> Result<Payload, RenderError> {
    match render_or_needs(spec, responses, &[], None)? {
        Ok(payload) => Ok(payload),
        Err(needs) => Err(RenderError {
            object: String::new(),
            path: needs.first().map(|r| r.path.clone()).unwrap_or_default(),
            message: "a template reads a secret that was not fetched".into(),
        }),
    }
}

/// [`render`], or the reads that Go templates still need before they can render (see
/// [`super::go_render`]); `raw` holds the answers' bytes where they were kept, `token` the
/// session's token for [`Output::VaultToken`].
pub fn render_or_needs(
    spec: &VaultSpec,
    responses: &[&Value],
    raw: &[Option<&[u8]>],
    token: Option<&[u8]>,
) -> Result<Result<Payload, Vec<Read>>, RenderError> {
    render_bounded(spec, responses, raw, token, PayloadBuilder::default())
}

/// [`render_or_needs`] into `out`, whose budget bounds the payload.
fn render_bounded(
    spec: &VaultSpec,
    responses: &[&Value],
    raw: &[Option<&[u8]>],
    token: Option<&[u8]>,
    mut out: PayloadBuilder,
) -> Result<Result<Payload, Vec<Read>>, RenderError> {
    let mut needs: Vec<Read> = Vec::new();
    for object in &spec.objects {
        let read = &spec.reads[object.read];
        let response = responses.get(object.read).copied().unwrap_or(&Value::Null);
        let err = |message: String| RenderError {
            object: object.name.clone(),
            path: read.path.clone(),
            message,
        };
        let data = match &object.output {
            Output::GoTemplate(t) => {
                match go_render::draw(t, &spec.reads, responses, raw, out.remaining())
                    .map_err(err)?
                {
                    go_render::Drawn::Bytes(b) => b,
                    go_render::Drawn::Needs(reads) => {
                        needs.extend(reads.into_iter().filter(|r| !spec.reads.contains(r)));
                        continue;
                    }
                }
            }
            Output::VaultToken => match token {
                Some(t) => t.to_vec(),
                None => return Err(err("no Vault token yet".into())),
            },
            _ => render_object(object, response, &out).map_err(err)?,
        };
        out.insert(
            object.name.clone(),
            FileContent {
                data: SecretBytes::new(data),
                mode: object.mode,
                owner: object.owner,
                group: object.group,
            },
        )
        .map_err(err)?;
    }
    if !needs.is_empty() {
        needs.dedup();
        return Ok(Err(needs));
    }
    Ok(Ok(out.finish()))
}

/// One object's bytes; a template stops at what is left of `out`'s budget (the caller checks
/// every other output, each at most linear in one answer, once built).
fn render_object(
    object: &ObjectSpec,
    response: &Value,
    out: &PayloadBuilder,
) -> Result<Vec<u8>, String> {
    match &object.output {
        Output::WholeResponse => Ok(whole_response(response)),
        Output::Key { key, encoding } => {
            let data = secret_data(response)?;
            let value = data.get(key).ok_or_else(|| missing_key(key, data))?;
            decode(value_bytes(value), *encoding, key)
        }
        Output::Format { format, keys } => {
            let data = secret_data(response)?;
            let selected: Vec<(&str, &Value)> = match keys {
                None => data.iter().map(|(k, v)| (k.as_str(), v)).collect(),
                Some(keys) => keys
                    .iter()
                    .map(|k| {
                        data.get(k)
                            .map(|v| (k.as_str(), v))
                            .ok_or_else(|| missing_key(k, data))
                    })
                    .collect::<Result<_, _>>()?,
            };
            format_keys(*format, &selected)
        }
        Output::Template(source) => template(source, response, out),
        Output::GoTemplate(_) | Output::VaultToken => {
            Err("internal: rendered by render_bounded".into())
        }
    }
}

/// The secret's key/value map: `data.data` for KV v2, `data` otherwise (the CSI `keyFromData`).
fn secret_data(response: &Value) -> Result<&serde_json::Map<String, Value>, String> {
    let data = response.get("data");
    match data.and_then(|d| d.get("data")).and_then(Value::as_object) {
        Some(inner) => Ok(inner),
        None => data.and_then(Value::as_object).ok_or_else(|| {
            "the response has no data map (a KV v2 secret whose current version is deleted?)"
                .to_string()
        }),
    }
}

fn missing_key(key: &str, data: &serde_json::Map<String, Value>) -> String {
    let names: Vec<&str> = data.keys().map(String::as_str).collect();
    format!(
        "no key {key:?} in the secret; its keys are: {}",
        if names.is_empty() {
            "(none)".into()
        } else {
            names.join(", ")
        }
    )
}

/// Strings raw, everything else as compact JSON (Go's `json.Marshal`, as the CSI provider does).
fn value_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn decode(bytes: Vec<u8>, encoding: Encoding, key: &str) -> Result<Vec<u8>, String> {
    match encoding {
        Encoding::Utf8 => Ok(bytes),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(trim_ascii(&bytes))
            // The decoder's own message quotes the offending byte: a byte of the secret.
            .map_err(|_| {
                format!(
                    "key {key:?} is not valid base64; set encoding to utf-8 to write it as stored"
                )
            }),
        Encoding::Hex => decode_hex(trim_ascii(&bytes)).ok_or_else(|| {
            format!("key {key:?} is not valid hex; set encoding to utf-8 to write it as stored")
        }),
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn decode_hex(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

/// The whole API response as the CSI provider writes it: `json.Marshal(api.Secret)`, whose
/// fields come in the Go struct's order.
fn whole_response(response: &Value) -> Vec<u8> {
    const FIELDS: &[(&str, bool)] = &[
        ("request_id", false),
        ("lease_id", false),
        ("lease_duration", false),
        ("renewable", false),
        ("data", false),
        ("warnings", false),
        ("auth", true),
        ("wrap_info", true),
        ("mount_type", true),
    ];
    let mut out = String::from("{");
    for (name, omit_empty) in FIELDS {
        let v = response.get(*name).cloned().unwrap_or(Value::Null);
        if *omit_empty && (v.is_null() || v == Value::String(String::new())) {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&format!("{}:{}", Value::String((*name).into()), v));
    }
    out.push('}');
    out.into_bytes()
}

fn format_keys(format: Format, entries: &[(&str, &Value)]) -> Result<Vec<u8>, String> {
    // Keys keep the order they were listed in (or the secret's sorted order without `keys`).
    let text = match format {
        Format::Json => {
            let mut s = String::from("{");
            for (i, (k, v)) in entries.iter().enumerate() {
                let value = serde_json::to_string_pretty(v)
                    .map_err(|e| e.to_string())?
                    .replace('\n', "\n  ");
                s.push_str(&format!(
                    "{}\n  {}: {value}",
                    if i == 0 { "" } else { "," },
                    Value::String(k.to_string())
                ));
            }
            s.push_str("\n}\n");
            s
        }
        Format::Yaml => {
            let map: serde_yaml::Mapping = entries
                .iter()
                .map(|(k, v)| {
                    serde_yaml::to_value(v).map(|v| (serde_yaml::Value::String(k.to_string()), v))
                })
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            serde_yaml::to_string(&map).map_err(|e| e.to_string())?
        }
        Format::Dotenv => {
            let mut s = String::new();
            for (k, v) in entries {
                if !is_env_name(k) {
                    return Err(format!(
                        "key {k:?} is not a valid environment variable name for dotenv (letters, digits, _; not starting with a digit)"
                    ));
                }
                s.push_str(&format!("{k}={}\n", dotenv_quote(&value_text(v))));
            }
            s
        }
        Format::Properties => {
            let mut s = String::new();
            for (k, v) in entries {
                s.push_str(&format!(
                    "{}={}\n",
                    properties_escape(k, true),
                    properties_escape(&value_text(v), false)
                ));
            }
            s
        }
    };
    Ok(text.into_bytes())
}

/// java.util.Properties escaping; non-ASCII as `\uXXXX` so ISO-8859-1 readers get it right.
fn properties_escape(s: &str, is_key: bool) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0c' => out.push_str("\\f"),
            '=' | ':' if is_key => out.push_str(&format!("\\{c}")),
            '#' | '!' if i == 0 => out.push_str(&format!("\\{c}")),
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn environment() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    env
}

/// Checks that a template parses (at config time, so a typo is exit code 2, not a runtime error).
pub fn check_template(source: &str) -> Result<(), String> {
    environment()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| template_message(&e))
}

/// Renders a template with `data` (the secret's keys), `metadata` (KV v2) and `response`, at
/// most what is left of `budget`'s bytes (a loop can repeat a value any number of times).
/// Undefined values are errors, never empty strings.
fn template(source: &str, response: &Value, budget: &PayloadBuilder) -> Result<Vec<u8>, String> {
    let env = environment();
    let tmpl = env
        .template_from_str(source)
        .map_err(|e| template_message(&e))?;
    let data = secret_data(response)
        .map(|m| Value::Object(m.clone()))
        .unwrap_or(Value::Null);
    let metadata = response
        .get("data")
        .and_then(|d| d.get("metadata"))
        .cloned()
        .unwrap_or(Value::Null);
    let ctx = minijinja::context! {
        data => minijinja::Value::from_serialize(&data),
        metadata => minijinja::Value::from_serialize(&metadata),
        response => minijinja::Value::from_serialize(response),
    };
    let mut out = BoundedWriter {
        buf: Vec::new(),
        limit: budget.remaining(),
        exceeded: false,
    };
    let rendered = tmpl.render_captured_to(ctx, &mut out);
    if out.exceeded {
        // Stopped by the writer: the budget ran out, not a fault of the template.
        return Err(budget.too_much(None));
    }
    rendered.map(|_| out.buf).map_err(|e| {
        let mut msg = template_message(&e);
        if e.kind() == minijinja::ErrorKind::UndefinedError {
            // The expression as written in the template (never a value), and the names that
            // do exist, like a missing `secretKey` lists the keys.
            let mut missing: Vec<String> = tmpl
                .undeclared_variables(true)
                .into_iter()
                .filter(|name| {
                    let mut parts = name.splitn(2, '.');
                    let (top, key) = (parts.next().unwrap_or(""), parts.next());
                    let within = match top {
                        "data" => &data,
                        "metadata" => &metadata,
                        "response" => response,
                        _ => return true,
                    };
                    let first = key.map(|k| k.split('.').next().unwrap_or(k));
                    first.is_some_and(|k| within.get(k).is_none())
                })
                .collect();
            missing.sort();
            if !missing.is_empty() {
                msg.push_str(&format!(": `{}` is not defined", missing.join("`, `")));
            }
            if let Value::Object(keys) = &data {
                let names: Vec<&str> = keys.keys().map(String::as_str).collect();
                msg.push_str(&format!("; data has the keys [{}]", names.join(", ")));
            }
        }
        msg
    })
}

/// minijinja's message with its line number, without the debug dump of the context (values!).
fn template_message(e: &minijinja::Error) -> String {
    let mut msg = format!("template: {}", e.kind());
    if let Some(detail) = e.detail() {
        msg.push_str(&format!(": {detail}"));
    }
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (template line {line})"));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::MAX_PAYLOAD_BYTES;
    use serde_json::json;

    fn kv2(data: Value) -> Value {
        json!({"request_id": "r", "lease_id": "", "lease_duration": 0, "renewable": false,
               "data": {"data": data, "metadata": {"version": 3}}, "warnings": null})
    }

    fn key(k: &str, encoding: Encoding) -> Output {
        Output::Key {
            key: k.into(),
            encoding,
        }
    }

    fn obj(output: Output) -> ObjectSpec {
        ObjectSpec {
            name: "f".into(),
            read: 0,
            output,
            mode: 0o600,
            owner: None,
            group: None,
        }
    }

    fn run(output: Output, response: Value) -> Result<String, String> {
        render_object(&obj(output), &response, &PayloadBuilder::default())
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn keys_come_from_kv2_data_data_or_kv1_data() {
        assert_eq!(
            run(key("u", Encoding::Utf8), kv2(json!({"u": "admin"}))).unwrap(),
            "admin"
        );
        assert_eq!(
            run(key("u", Encoding::Utf8), json!({"data": {"u": "v1"}})).unwrap(),
            "v1"
        );
        assert_eq!(
            run(
                key("n", Encoding::Utf8),
                json!({"data": {"n": {"a": [1, true]}}})
            )
            .unwrap(),
            r#"{"a":[1,true]}"#
        );
    }

    #[test]
    fn a_missing_key_names_the_existing_keys_not_values() {
        let e = run(
            key("pass", Encoding::Utf8),
            kv2(json!({"username": "admin", "password": "s3cr3t"})),
        )
        .unwrap_err();
        assert!(
            e.contains("no key \"pass\"") && e.contains("password, username"),
            "{e}"
        );
        assert!(!e.contains("s3cr3t"));
    }

    #[test]
    fn encodings_decode_to_raw_bytes() {
        let r = kv2(json!({"b": "aGVsbG8=", "h": "68656c6c6f", "bad": "c2Vj%mV0"}));
        assert_eq!(run(key("b", Encoding::Base64), r.clone()).unwrap(), "hello");
        assert_eq!(run(key("h", Encoding::Hex), r.clone()).unwrap(), "hello");
        let e = run(key("bad", Encoding::Base64), r).unwrap_err();
        assert!(e.contains("not valid base64"), "{e}");
        // Neither the offending symbol nor its offset: they are pieces of the secret.
        assert!(!e.contains("symbol") && !e.contains("offset"), "{e}");
    }

    #[test]
    fn whole_response_keeps_go_field_order() {
        let out = run(Output::WholeResponse, kv2(json!({"u": "a"}))).unwrap();
        assert!(
            out.starts_with(
                r#"{"request_id":"r","lease_id":"","lease_duration":0,"renewable":false,"data":{"#
            ),
            "{out}"
        );
        assert!(out.ends_with(r#""warnings":null}"#), "{out}");
    }

    fn fmt(format: Format, keys: Option<&[&str]>, data: Value) -> Result<String, String> {
        run(
            Output::Format {
                format,
                keys: keys.map(|k| k.iter().map(|s| s.to_string()).collect()),
            },
            kv2(data),
        )
    }

    #[test]
    fn formats() {
        let data = json!({"user": "admin", "pass": "p w'd$", "port": 5432});
        assert_eq!(
            fmt(Format::Json, Some(&["user"]), data.clone()).unwrap(),
            "{\n  \"user\": \"admin\"\n}\n"
        );
        assert_eq!(
            fmt(Format::Dotenv, None, data.clone()).unwrap(),
            "pass=\"p w'd\\$\"\nport=5432\nuser=admin\n"
        );
        assert_eq!(
            fmt(Format::Yaml, Some(&["user", "port"]), data.clone()).unwrap(),
            "user: admin\nport: 5432\n"
        );
        assert_eq!(
            fmt(
                Format::Properties,
                None,
                json!({"a key": "x=y", "u": "é\n"})
            )
            .unwrap(),
            "a\\ key=x=y\nu=\\u00e9\\n\n"
        );
        assert!(fmt(Format::Dotenv, None, json!({"bad-name": "x"}))
            .unwrap_err()
            .contains("environment variable"));
        assert!(fmt(Format::Json, Some(&["nope"]), data)
            .unwrap_err()
            .contains("no key \"nope\""));
    }

    #[test]
    fn dotenv_single_quotes_when_enough() {
        assert_eq!(dotenv_quote("a b$c"), "'a b$c'");
        assert_eq!(dotenv_quote(""), "''");
    }

    #[test]
    fn templates_render_and_fail_on_undefined() {
        let r = kv2(json!({"user": "admin", "pass": "pw"}));
        let t = Output::Template(
            "postgres://{{ data.user }}:{{ data.pass }}@db/app v{{ metadata.version }}\n".into(),
        );
        assert_eq!(
            run(t, r.clone()).unwrap(),
            "postgres://admin:pw@db/app v3\n"
        );
        let e = run(Output::Template("{{ data.missing }}".into()), r).unwrap_err();
        assert!(e.contains("undefined"), "{e}");
        assert!(e.contains("`data.missing` is not defined"), "{e}");
        assert!(e.contains("[pass, user]"), "{e}");
        assert!(!e.contains("admin") && !e.contains("pw"), "{e}");
        assert!(check_template("{% if %}").is_err());
    }

    fn file(bytes: usize) -> FileContent {
        FileContent {
            data: SecretBytes::new(vec![b'x'; bytes]),
            mode: 0o600,
            owner: None,
            group: None,
        }
    }

    #[test]
    fn the_payload_builder_refuses_a_file_past_its_limit_before_adding_it() {
        let mut out = PayloadBuilder::with_limit(3 << 20);
        out.insert("a".into(), file(2 << 20)).unwrap();
        // Replacing a file counts its new size only.
        out.insert("a".into(), file(1 << 20)).unwrap();
        assert_eq!(out.remaining(), 2 << 20);
        out.reserve(2 << 20).unwrap();
        let e = out.reserve((2 << 20) + 1).unwrap_err();
        assert!(e.contains("this file (2097153 bytes)"), "{e}");
        assert!(e.contains("past 3145728 bytes (3 MiB)"), "{e}");
        assert!(
            e.contains("(1 files, 1048576 bytes before this one)"),
            "{e}"
        );
        assert!(out.insert("b".into(), file((2 << 20) + 1)).is_err());
        let p = out.finish();
        assert_eq!(p.files.len(), 1, "the refused file was not added");
        assert_eq!(MAX_PAYLOAD_BYTES, 4 << 20);
    }

    #[test]
    fn a_template_loop_stops_at_the_bytes_left() {
        let r = kv2(json!({"big": "y".repeat(1000)}));
        let t = "{% for i in range(10000) %}{{ data.big }}{% endfor %}";
        let within = PayloadBuilder::with_limit(20_000);
        assert_eq!(template("{{ data.big }}", &r, &within).unwrap().len(), 1000);
        let e = template(t, &r, &within).unwrap_err();
        assert!(e.contains("more than the 20000 bytes left"), "{e}");
        assert!(!e.contains("yyy"), "{e}");
        // The same loop fits a budget that holds it all.
        let roomy = PayloadBuilder::with_limit(10 << 20);
        assert_eq!(template(t, &r, &roomy).unwrap().len(), 10_000_000);
    }

    #[test]
    fn many_objects_repeating_one_value_are_refused_past_the_limit() {
        let r = kv2(json!({"big": "z".repeat(100_000)}));
        let spec = VaultSpec {
            vault: Default::default(),
            auth: crate::provider::vault::spec::Auth::Token {
                token_file: "/dev/null".into(),
            },
            reads: vec![crate::provider::vault::spec::Read {
                path: "secret/data/big".into(),
                method: "GET".into(),
                body: None,
                template: false,
            }],
            objects: (0..40)
                .map(|i| ObjectSpec {
                    name: format!("f{i}"),
                    ..obj(key("big", Encoding::Utf8))
                })
                .collect(),
        };
        let e = render_bounded(
            &spec,
            &[&r],
            &[],
            None,
            PayloadBuilder::with_limit(3_000_000),
        )
        .unwrap_err();
        assert_eq!(e.object, "f30", "the first object past the limit is named");
        assert!(e.message.contains("past 3000000 bytes"), "{}", e.message);
        assert!(!e.message.contains("zzz"), "no value in the error");
        assert_eq!(render(&spec, &[&r]).unwrap().files.len(), 40);
    }
}
