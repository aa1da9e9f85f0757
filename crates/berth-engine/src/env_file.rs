//! `--env-file` and `-e`: docker's format and its rule for a bare `KEY` (the caller's value,
//! or nothing when the caller has none).

use std::path::Path;

use crate::error::{Error, Result};

/// One `-e` value or env-file line as `KEY=VALUE`; `None` when it is a bare `KEY` the
/// caller's environment (`lookup`) does not have.
pub fn resolve_entry(entry: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    match entry.split_once('=') {
        Some(_) => Some(entry.to_string()),
        None => lookup(entry).map(|v| format!("{entry}={v}")),
    }
}

/// Parse an env file's text: one `KEY=VALUE` or `KEY` a line, `#` comments and blank lines
/// skipped, no quoting (the value is the rest of the line, as docker reads it).
pub fn parse(text: &str, what: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    // A UTF-8 byte order mark (editors on Windows) is not part of the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (n, line) in text.lines().enumerate() {
        // docker trims leading whitespace only: trailing spaces belong to the value.
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split('=').next().unwrap_or_default();
        if key.is_empty() {
            return Err(Error::Invalid(format!("--env-file {what}: line {}: no variable name before '='", n + 1)));
        }
        if key.chars().any(char::is_whitespace) {
            return Err(Error::Invalid(format!("--env-file {what}: line {}: variable {key:?} contains whitespace", n + 1)));
        }
        out.extend(resolve_entry(line, lookup));
    }
    Ok(out)
}

/// Read and parse an env file, bare keys taken from this process's environment.
pub fn read(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Invalid(format!("--env-file {}: {e}", path.display())))?;
    parse(&text, &path.display().to_string(), &|k| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(k: &str) -> Option<String> {
        (k == "FROM_HOST").then(|| "h".to_string())
    }

    #[test]
    fn env_files_skip_comments_and_take_bare_keys_from_the_host() {
        let text = "\u{feff}# comment\n\nA=1\n  B=two words \nFROM_HOST\nMISSING\nC=x=y\nEMPTY=\n";
        let env = parse(text, "f", &host).unwrap();
        assert_eq!(env, ["A=1", "B=two words ", "FROM_HOST=h", "C=x=y", "EMPTY="]);
    }

    #[test]
    fn env_file_lines_without_a_name_are_refused_with_the_line_number() {
        let err = parse("A=1\n=oops\n", "vars.env", &host).unwrap_err().to_string();
        assert!(err.contains("--env-file vars.env: line 2"), "{err}");
        assert!(parse("BAD KEY=1\n", "f", &host).is_err());
    }

    #[test]
    fn a_missing_env_file_names_the_flag() {
        let err = read(Path::new("/nonexistent/berth.env")).unwrap_err().to_string();
        assert!(err.starts_with("--env-file /nonexistent/berth.env:"), "{err}");
    }
}
