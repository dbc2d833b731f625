//! RFC 6902 JSON Patch computed by diffing two documents, so `mutate` can stay a plain
//! function from pod to pod.
//!
//! Objects are diffed key by key; arrays that differ are replaced whole (simple, and always
//! applies cleanly to the document it was computed from).

use serde::Serialize;
use serde_json::{Map, Value};

/// One operation, borrowing its value from the new document: serialising the patch of a big
/// pod does not copy the pod first.
#[derive(Debug, Serialize)]
struct Op<'a> {
    op: &'static str,
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a Value>,
}

/// The operations that turn `old` into `new`.
pub fn diff(old: &Value, new: &Value) -> Vec<Value> {
    ops(old, new)
        .iter()
        .filter_map(|op| serde_json::to_value(op).ok())
        .collect()
}

/// [`diff`] serialised as a JSON array, without copying any value.
pub fn diff_json(old: &Value, new: &Value) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&ops(old, new)).map_err(|e| format!("cannot serialise the patch: {e}"))
}

fn ops<'a>(old: &Value, new: &'a Value) -> Vec<Op<'a>> {
    let mut ops = Vec::new();
    walk("", old, new, &mut ops);
    ops
}

fn walk<'a>(path: &str, old: &Value, new: &'a Value, ops: &mut Vec<Op<'a>>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                ops.push(Op {
                    op: "remove",
                    path: format!("{path}/{}", escape(key)),
                    value: None,
                });
            }
            for (key, value) in b {
                let child = format!("{path}/{}", escape(key));
                match a.get(key) {
                    None => ops.push(Op {
                        op: "add",
                        path: child,
                        value: Some(value),
                    }),
                    Some(old_value) => walk(&child, old_value, value, ops),
                }
            }
        }
        (a, b) if a == b => {}
        (_, b) => ops.push(Op {
            op: "replace",
            path: path.to_string(),
            value: Some(b),
        }),
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
    use serde_json::json;

    #[test]
    fn diff_then_apply_gives_the_new_document() {
        let old = json!({"metadata": {"annotations": {"a/b": "1"}}, "spec": {"containers": [{"name": "app"}]}});
        let new = json!({
            "metadata": {"annotations": {"a/b": "1", "secretdrop.dev/status": "injected"}},
            "spec": {"containers": [{"name": "app", "volumeMounts": []}], "volumes": [{"name": "v"}]}
        });
        let ops = diff(&old, &new);
        assert_eq!(apply(&old, &ops).unwrap(), new);
        assert_eq!(
            serde_json::from_slice::<Vec<Value>>(&diff_json(&old, &new).unwrap()).unwrap(),
            ops
        );
        assert_eq!(
            ops[0],
            json!({"op": "add", "path": "/metadata/annotations/secretdrop.dev~1status", "value": "injected"})
        );
        assert!(
            ops.iter()
                .any(|o| o["path"] == "/metadata/annotations/secretdrop.dev~1status"),
            "{ops:?}"
        );
        assert!(diff(&new, &new).is_empty());
    }
}
