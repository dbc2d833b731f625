//! RFC 6902 JSON Patch computed by diffing two documents, so `mutate` can stay a plain
//! function from pod to pod.
//!
//! Objects are diffed key by key; arrays that differ are replaced whole (simple, and always
//! applies cleanly to the document it was computed from).

use serde_json::{json, Map, Value};

/// The operations that turn `old` into `new`.
pub fn diff(old: &Value, new: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    walk("", old, new, &mut ops);
    ops
}

fn walk(path: &str, old: &Value, new: &Value, ops: &mut Vec<Value>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                ops.push(json!({"op": "remove", "path": format!("{path}/{}", escape(key))}));
            }
            for (key, value) in b {
                let child = format!("{path}/{}", escape(key));
                match a.get(key) {
                    None => ops.push(json!({"op": "add", "path": child, "value": value})),
                    Some(old_value) => walk(&child, old_value, value, ops),
                }
            }
        }
        (a, b) if a == b => {}
        (_, b) => ops.push(json!({"op": "replace", "path": path, "value": b})),
    }
}

/// JSON Pointer escaping: `~` → `~0`, `/` → `~1` (annotation keys contain `/`).
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Applies add/remove/replace operations (what [`diff`] produces). Used to check patches.
pub fn apply(doc: &Value, ops: &[Value]) -> Result<Value, String> {
    let mut doc = doc.clone();
    for op in ops {
        let path = op["path"].as_str().ok_or("op without path")?;
        let kind = op["op"].as_str().ok_or("op without op")?;
        if path.is_empty() {
            if kind == "replace" {
                doc = op["value"].clone();
                continue;
            }
            return Err(format!("{kind} at the root"));
        }
        let (parent, last) = path.rsplit_once('/').ok_or("path must start with /")?;
        let last = last.replace("~1", "/").replace("~0", "~");
        let target = if parent.is_empty() {
            Some(&mut doc)
        } else {
            doc.pointer_mut(parent)
        };
        let obj: &mut Map<String, Value> = target
            .and_then(Value::as_object_mut)
            .ok_or_else(|| format!("{path}: parent is not an object"))?;
        match kind {
            "add" => {
                obj.insert(last, op["value"].clone());
            }
            "replace" => {
                let slot = obj
                    .get_mut(&last)
                    .ok_or_else(|| format!("{path}: nothing to replace"))?;
                *slot = op["value"].clone();
            }
            "remove" => {
                obj.remove(&last)
                    .ok_or_else(|| format!("{path}: nothing to remove"))?;
            }
            other => return Err(format!("unsupported op {other}")),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_then_apply_gives_the_new_document() {
        let old = json!({"metadata": {"annotations": {"a/b": "1"}}, "spec": {"containers": [{"name": "app"}]}});
        let new = json!({
            "metadata": {"annotations": {"a/b": "1", "secretdrop.dev/status": "injected"}},
            "spec": {"containers": [{"name": "app", "volumeMounts": []}], "volumes": [{"name": "v"}]}
        });
        let ops = diff(&old, &new);
        assert_eq!(apply(&old, &ops).unwrap(), new);
        assert!(
            ops.iter()
                .any(|o| o["path"] == "/metadata/annotations/secretdrop.dev~1status"),
            "{ops:?}"
        );
        assert!(diff(&new, &new).is_empty());
    }
}
