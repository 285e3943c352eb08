//! The envelope of every JSON report: which layout it has and which commit
//! made it.

/// The version of the JSON reports' layout; bumped when a field changes
/// meaning or goes away (new fields do not bump it).
pub const SCHEMA_VERSION: u32 = 1;

/// The commit the binary was built from (`git describe --always --dirty`
/// at build time, see harness/build.rs), or "unknown".
pub fn commit() -> String {
    env!("FIBNEIGH_COMMIT").to_string()
}

/// `value` as a JSON object that says which layout and which commit made
/// it: an object gains `schema_version` and `commit`; anything else is
/// wrapped as `{schema_version, commit, data}`.
pub fn stamped<T: serde::Serialize>(value: &T) -> serde_json::Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    out.insert("schema_version".into(), SCHEMA_VERSION.into());
    out.insert("commit".into(), commit().into());
    match serde_json::to_value(value)? {
        serde_json::Value::Object(body) => out.extend(body),
        other => {
            out.insert("data".into(), other);
        }
    }
    Ok(serde_json::Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_say_their_layout_and_commit() {
        #[derive(serde::Serialize)]
        struct R {
            cells: u32,
        }
        let v = stamped(&R { cells: 3 }).expect("json");
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert!(v["commit"].as_str().is_some_and(|c| !c.is_empty()));
        assert_eq!(v["cells"], 3);
        let w = stamped(&vec![1, 2]).expect("json");
        assert_eq!(w["data"][1], 2);
    }
}
