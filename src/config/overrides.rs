//! `--set section.key=value` overrides, applied to the parsed TOML before validation.
//!
//! The value is read as a TOML value (`2048`, `0.5`, `true`, `[0, 1, 0.5]`, `"mup"`); a bare
//! word that is not valid TOML is taken as a string, so `--set model.activation=relu` works.

use super::RunConfig;
use crate::error::{Error, Result};

/// Apply overrides in order; a later one wins.
pub fn apply_overrides(table: &mut toml::Table, overrides: &[String]) -> Result<()> {
    for item in overrides {
        let (key, raw) = item.split_once('=').ok_or_else(|| {
            Error::config(format!("--set '{item}' is not of the form key=value"), "write e.g. --set model.width=2048")
        })?;
        let key = key.trim();
        check_known(key, item)?;
        let value = parse_value(raw.trim());
        let parts: Vec<&str> = key.split('.').collect();
        let (last, sections) = parts.split_last().expect("split always yields one part");
        let mut cur = &mut *table;
        for s in sections {
            let entry = cur.entry(s.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            cur = entry.as_table_mut().ok_or_else(|| {
                Error::config(format!("--set '{item}': '{s}' is a value, not a section"), "check the key path")
            })?;
        }
        cur.insert(last.to_string(), value);
    }
    Ok(())
}

/// Read a `--set` value as TOML, or as a bare string when it is not valid TOML.
pub fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// Every key a config may contain, as dotted paths.
pub fn known_keys() -> Vec<String> {
    let mut keys = Vec::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(RunConfig::default()) {
        collect(&t, "", &mut keys);
    }
    // Optional keys (and flags that are written only when set) are absent from the serialized default.
    for k in
        ["data.outputs_per_width", "data.x", "data.y", "data.test_x", "data.test_y", "data.dir", "model.proportional"]
    {
        keys.push(k.to_string());
    }
    keys
}

fn collect(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (k, v) in t {
        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(sub) => collect(sub, &path, out),
            _ => out.push(path),
        }
    }
}

fn check_known(key: &str, item: &str) -> Result<()> {
    let keys = known_keys();
    if keys.iter().any(|k| k == key) {
        return Ok(());
    }
    let best = keys.iter().min_by_key(|k| edit_distance(k, key)).cloned().unwrap_or_default();
    Err(Error::config(
        format!("--set '{item}': unknown key '{key}'"),
        format!("did you mean '{best}'? (README.md lists every key)"),
    ))
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed() {
        assert_eq!(parse_value("2048"), toml::Value::Integer(2048));
        assert_eq!(parse_value("relu"), toml::Value::String("relu".into()));
        assert!(parse_value("[0, 1, 0.5]").is_array());
        assert_eq!(edit_distance("widht", "width"), 2);
    }
}
