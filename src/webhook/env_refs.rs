//! One container's environment as kubelet builds it (docs/webhook.md, "Synced Secrets"),
//! split between kubelet and `secretdrop exec` when some of it comes from Secrets that a
//! SecretProviderClass of the pod syncs (`secretObjects`): those Secrets never exist, so
//! their variables are served by `exec` from the converted volume's files instead.
//!
//! Kubelet's order is kept: `envFrom` sources in order (a later one wins), then `env` entries
//! in order (an entry wins over `envFrom` and over earlier entries), and an `env` value's
//! `$(VAR)` sees what was defined before it. A variable whose final definition is a synced
//! key is set by `exec`; a plain value that refers to a variable only `exec` knows becomes an
//! `exec` template with the same meaning ([`crate::exec::expand`]); everything else stays
//! with kubelet. When kubelet's result cannot be reproduced exactly, the pod is refused with a
//! message naming the container, the variable and the fix.
//!
//! Pure: no I/O. Invariants: the rewritten `env` and `envFrom` hold no reference to a synced
//! Secret; every variable `exec` sets has exactly one definition; a template only refers to
//! values that are final when `exec` expands it.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::config::pod_settings::shorten;
use crate::exec::expand;
use crate::render::is_env_name;

/// A Secret a class of the pod syncs, and where its keys are.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncedSecret {
    pub name: String,
    /// The converted CSI volume whose files hold its values.
    pub volume: String,
    pub class: String,
    /// `type`, e.g. `Opaque` or `kubernetes.io/tls`.
    pub kind: String,
    /// key → objectName, in the class's order.
    pub data: Vec<(String, String)>,
}

impl SyncedSecret {
    fn object(&self, key: &str) -> Option<&str> {
        self.data
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, o)| o.as_str())
    }
}

/// How `exec` sets a variable.
#[derive(Debug, Clone, PartialEq)]
pub enum Served {
    /// The content of `object` in the converted volume `volume`.
    Object { volume: String, object: String },
    /// A value with `$(VAR)` that `exec` expands (already escaped for it).
    Template(String),
}

/// The container's environment, split.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// What `exec` sets, in kubelet's order, each name once.
    pub served: Vec<(String, Served)>,
    /// Whether command and args refer to a variable only `exec` knows: `exec --expand`.
    pub expand: bool,
    /// Every name the container's own environment defines (kubelet's and `exec`'s).
    pub defined: Vec<String>,
    /// The container's `env` and `envFrom` without what `exec` serves.
    pub env: Vec<Value>,
    pub env_from: Vec<Value>,
    /// What was rewritten, one line each, for the response's warnings.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Def {
    Kubelet,
    Served(Served),
}

/// The container's environment split, or `None` when it reads no synced Secret.
pub fn split(container: &Value, synced: &[SyncedSecret]) -> Result<Option<Split>, String> {
    let name = container["name"].as_str().unwrap_or("");
    let at = |m: String| format!("container {:?}: {m}", shorten(name));
    let find = |n: Option<&str>| n.and_then(|n| synced.iter().find(|s| s.name == n));
    let env_from = list(&container["envFrom"]);
    let env = list(&container["env"]);
    let reads_synced = env_from
        .iter()
        .any(|e| find(e.pointer("/secretRef/name").and_then(Value::as_str)).is_some())
        || env.iter().any(|e| {
            find(
                e.pointer("/valueFrom/secretKeyRef/name")
                    .and_then(Value::as_str),
            )
            .is_some()
        });
    if !reads_synced {
        return Ok(None);
    }
    // Every definition in kubelet's order; `current` is each name's latest.
    let mut defs: Vec<(String, Def)> = Vec::new();
    let mut current: HashMap<String, usize> = HashMap::new();
    // For each template: the definitions it read (name, index), checked once all are known.
    let mut reads: Vec<(String, Vec<(String, usize)>)> = Vec::new();
    let mut notes = Vec::new();
    let mut kept_from = Vec::new();
    let mut served_before: Option<String> = None;
    for e in &env_from {
        let secret = find(e.pointer("/secretRef/name").and_then(Value::as_str));
        let Some(secret) = secret else {
            // A source kubelet reads: its names are unknown here. If a synced one came before,
            // kubelet would let this one override it, and exec (which runs last) would not.
            if let Some(before) = &served_before {
                return Err(at(format!(
                    "envFrom reads {} after the synced Secret {before:?}; kubelet would let it \
                     override the synced names, which secretdrop cannot know before it runs. Put \
                     the synced secretRef last in envFrom (or name the variables in env)",
                    describe_source(e)
                )));
            }
            kept_from.push(e.clone());
            continue;
        };
        if secret.kind == "kubernetes.io/tls" {
            return Err(at(format!(
                "envFrom reads the synced Secret {:?} of type kubernetes.io/tls; secretdrop serves \
                 tls.crt and tls.key as files only: mount the class's volume instead",
                secret.name
            )));
        }
        let prefix = e["prefix"].as_str().unwrap_or("");
        for (key, object) in &secret.data {
            let var = format!("{prefix}{key}");
            if !is_env_name(&var) {
                return Err(at(format!(
                    "envFrom of the synced Secret {:?} would set {:?}, which is not a variable \
                     name secretdrop exec can set (letters, digits and _, not starting with a \
                     digit): change the prefix or the class's key",
                    secret.name,
                    shorten(&var)
                )));
            }
            define(
                &mut defs,
                &mut current,
                &var,
                Def::Served(served(secret, object)),
            );
        }
        served_before = Some(secret.name.clone());
        notes.push(format!(
            "envFrom secretRef {:?}{}: {} variables set by secretdrop exec from volume {:?}",
            secret.name,
            match prefix {
                "" => String::new(),
                p => format!(" (prefix {p:?})"),
            },
            secret.data.len(),
            secret.volume
        ));
    }
    let mut kept_env = Vec::new();
    for e in &env {
        let var = e["name"].as_str().unwrap_or("").to_string();
        if let Some(secret) = find(
            e.pointer("/valueFrom/secretKeyRef/name")
                .and_then(Value::as_str),
        ) {
            let key = e
                .pointer("/valueFrom/secretKeyRef/key")
                .and_then(Value::as_str)
                .unwrap_or("");
            let optional = e.pointer("/valueFrom/secretKeyRef/optional") == Some(&json!(true));
            if !is_env_name(&var) {
                return Err(at(format!(
                    "env {:?} reads the synced Secret {:?}; secretdrop exec sets only variable \
                     names of letters, digits and _, not starting with a digit",
                    shorten(&var),
                    secret.name
                )));
            }
            if secret.kind == "kubernetes.io/tls" {
                return Err(at(format!(
                    "env {var} reads key {key:?} of the synced Secret {:?} of type \
                     kubernetes.io/tls; secretdrop serves tls.crt and tls.key as files only: \
                     mount the class's volume instead",
                    secret.name
                )));
            }
            match secret.object(key) {
                Some(object) => {
                    define(
                        &mut defs,
                        &mut current,
                        &var,
                        Def::Served(served(secret, object)),
                    );
                    notes.push(format!(
                        "env {var}: secretKeyRef {}/{key} set by secretdrop exec from {}/{object}",
                        secret.name, secret.volume
                    ));
                }
                // Kubelet skips an optional key that is missing.
                None if optional => notes.push(format!(
                    "env {var}: secretKeyRef {}/{key} is optional and the class syncs no such \
                     key; not set, as kubelet would",
                    secret.name
                )),
                None => {
                    let keys: Vec<String> = secret.data.iter().map(|(k, _)| k.clone()).collect();
                    return Err(at(format!(
                        "env {var} reads key {key:?} of the synced Secret {:?}, which its class \
                         {:?} does not sync (its keys are {}): kubelet would never start this \
                         container. Fix the key, or add it to the class's secretObjects",
                        secret.name,
                        secret.class,
                        crate::error::first_few(&keys, 10)
                    )));
                }
            }
            continue;
        }
        let plain = e.get("valueFrom").is_none();
        let value = e["value"].as_str().unwrap_or("");
        let refs = expand::references(value);
        let is_served = |n: &str| {
            current
                .get(n)
                .is_some_and(|&i| matches!(defs[i].1, Def::Served(_)))
        };
        if plain && refs.iter().any(|r| is_served(r)) {
            if !is_env_name(&var) {
                return Err(at(format!(
                    "env {:?} refers to a synced variable; secretdrop exec sets only variable \
                     names of letters, digits and _",
                    shorten(&var)
                )));
            }
            // What it read at this point; a name not defined yet stays literal, as kubelet
            // leaves it (a name defined by nobody may be a service variable: exec expands it
            // from its own environment, as kubelet would from the service's).
            let read: Vec<(String, usize)> = refs
                .iter()
                .filter_map(|r| current.get(*r).map(|&i| (r.to_string(), i)))
                .collect();
            let later = |r: &str| !current.contains_key(r) && defined_later(&env, e, r);
            let text = expand::escape_unless(value, &|r| !later(r));
            reads.push((var.clone(), read));
            define(
                &mut defs,
                &mut current,
                &var,
                Def::Served(Served::Template(text)),
            );
            notes.push(format!(
                "env {var}: refers to a synced variable; expanded by secretdrop exec as kubelet would"
            ));
            continue;
        }
        define(&mut defs, &mut current, &var, Def::Kubelet);
        kept_env.push(e.clone());
    }
    // A template must read what is final when exec expands it: every value is, unless the
    // name is defined again later.
    for (var, read) in &reads {
        for (r, at_point) in read {
            if current.get(r) != Some(at_point) {
                return Err(at(format!(
                    "env {var} refers to $({r}), which is defined again after it; kubelet would \
                     use the earlier value and secretdrop exec only knows the last. Define \
                     {r} once, or give {var} its value without $({r})"
                )));
            }
        }
    }
    let mut served_vars: Vec<(String, Served)> = Vec::new();
    for (i, (var, def)) in defs.iter().enumerate() {
        if let (Def::Served(s), Some(&last)) = (def, current.get(var)) {
            if last == i {
                served_vars.push((var.clone(), s.clone()));
            }
        }
    }
    // A plain value that overrides a synced name keeps its value: exec leaves it alone.
    let is_final_served = |n: &str| served_vars.iter().any(|(v, _)| v == n);
    let mut command_refs: Vec<String> = Vec::new();
    for field in ["command", "args"] {
        for a in list(&container[field]) {
            for r in expand::references(a.as_str().unwrap_or("")) {
                command_refs.push(r.to_string());
            }
        }
    }
    let expand = command_refs.iter().any(|r| is_final_served(r));
    if expand {
        notes.push("command and args: refer to synced variables; expanded by secretdrop exec as kubelet would".into());
    }
    let mut defined: Vec<String> = current.keys().cloned().collect();
    defined.sort();
    Ok(Some(Split {
        served: served_vars,
        expand,
        defined,
        env: kept_env,
        env_from: kept_from,
        notes,
    }))
}

fn served(secret: &SyncedSecret, object: &str) -> Served {
    Served::Object {
        volume: secret.volume.clone(),
        object: object.to_string(),
    }
}

fn define(
    defs: &mut Vec<(String, Def)>,
    current: &mut HashMap<String, usize>,
    name: &str,
    def: Def,
) {
    defs.push((name.to_string(), def));
    current.insert(name.to_string(), defs.len() - 1);
}

/// Whether `name` is defined by an `env` entry after `entry` (every `envFrom` source comes
/// before the entries, so only entries can be later).
fn defined_later(env: &[Value], entry: &Value, name: &str) -> bool {
    let mut after = false;
    for e in env {
        if std::ptr::eq(e, entry) {
            after = true;
            continue;
        }
        if after && e["name"].as_str() == Some(name) {
            return true;
        }
    }
    false
}

fn describe_source(e: &Value) -> String {
    if let Some(n) = e.pointer("/configMapRef/name").and_then(Value::as_str) {
        return format!("the ConfigMap {:?}", shorten(n));
    }
    if let Some(n) = e.pointer("/secretRef/name").and_then(Value::as_str) {
        return format!("the Secret {:?}", shorten(n));
    }
    "a source".into()
}

fn list(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv() -> Vec<SyncedSecret> {
        vec![SyncedSecret {
            name: "kvsecret".into(),
            volume: "secrets-store".into(),
            class: "vault-kv-sync".into(),
            kind: "Opaque".into(),
            data: vec![
                ("pwd".into(), "secret-1".into()),
                ("username".into(), "secret-2".into()),
            ],
        }]
    }

    fn obj(o: &str) -> Served {
        Served::Object {
            volume: "secrets-store".into(),
            object: o.into(),
        }
    }

    #[test]
    fn containers_without_synced_references_are_untouched() {
        let c = json!({"name": "a", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}]});
        assert_eq!(split(&c, &kv()).unwrap(), None);
    }

    #[test]
    fn kubelets_precedence_is_kept() {
        let c = json!({"name": "app",
            "envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "kvsecret"}, "prefix": "DB_"}],
            "env": [
                {"name": "DB_pwd", "value": "plain wins"},
                {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "kvsecret", "key": "username"}}},
                {"name": "OTHER", "valueFrom": {"secretKeyRef": {"name": "unrelated", "key": "k"}}},
                {"name": "URL", "value": "db://$(USER):$(DB_username)@$(HOST)/$$(USER)/$(LATER)"},
                {"name": "LATER", "value": "x"},
                {"name": "MISSING", "valueFrom": {"secretKeyRef": {"name": "kvsecret", "key": "nope", "optional": true}}}
            ],
            "command": ["/app", "--user=$(USER)"]});
        let s = split(&c, &kv()).unwrap().unwrap();
        assert_eq!(
            s.served,
            vec![
                ("DB_username".to_string(), obj("secret-2")),
                ("USER".to_string(), obj("secret-2")),
                (
                    "URL".to_string(),
                    Served::Template(
                        "db://$(USER):$(DB_username)@$(HOST)/$$(USER)/$$(LATER)".into()
                    )
                ),
            ]
        );
        assert!(s.expand);
        assert_eq!(s.env_from, vec![json!({"configMapRef": {"name": "cm"}})]);
        let kept: Vec<&str> = s.env.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(kept, ["DB_pwd", "OTHER", "LATER"]);
    }

    #[test]
    fn what_cannot_be_reproduced_is_refused_by_name() {
        let cases = [
            (
                json!({"name": "c", "envFrom": [{"secretRef": {"name": "kvsecret"}}, {"configMapRef": {"name": "cm"}}]}),
                "Put the synced secretRef last",
            ),
            (
                json!({"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "kvsecret", "key": "nope"}}}]}),
                "does not sync",
            ),
            (
                json!({"name": "c", "env": [
                {"name": "A", "valueFrom": {"secretKeyRef": {"name": "kvsecret", "key": "pwd"}}},
                {"name": "B", "value": "$(A)"},
                {"name": "A", "value": "again"}]}),
                "defined again after it",
            ),
            (
                json!({"name": "c", "envFrom": [{"secretRef": {"name": "kvsecret"}, "prefix": "1"}]}),
                "not a variable name",
            ),
        ];
        for (c, want) in cases {
            let m = split(&c, &kv()).unwrap_err();
            assert!(
                m.contains(want) && m.contains("container \"c\""),
                "{want}: {m}"
            );
        }
    }
}
