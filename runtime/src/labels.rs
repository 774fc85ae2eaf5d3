//! Class-name files: one class per line, in one of two layouts.
//!
//! - `id name` (Kinetics lists as PySlowFast and PaddleVideo ship them,
//!   `0 abseiling`): every line starts with an integer id, ids are exactly
//!   `0 .. N-1` in any order, and the name is the rest of the line.
//! - `name`: the line (trimmed) is the name, classes in line order.
//!
//! The layout is decided by the first class line: if it starts with an id,
//! every line must, since a file that mixes both is more likely broken than
//! a list of names that happen to begin with digits. Blank lines are skipped;
//! empty and duplicate names are refused, because a class the runtime cannot
//! tell apart from another is a bug in the list.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("{path}: cannot read labels: {why}")]
    Read { path: PathBuf, why: String },
    #[error("{path}: line {line}: {why}")]
    Line { path: PathBuf, line: usize, why: String },
    #[error("{path}: {why}")]
    Invalid { path: PathBuf, why: String },
}

/// Reads a labels file (see the module docs for the layouts).
pub fn read(path: &Path) -> Result<Vec<String>, LabelsError> {
    let text = std::fs::read_to_string(path).map_err(|e| LabelsError::Read { path: path.to_path_buf(), why: e.to_string() })?;
    parse(&text, path)
}

/// Parses the text of a labels file; `origin` only names it in errors.
pub fn parse(text: &str, origin: &Path) -> Result<Vec<String>, LabelsError> {
    let line_err = |line: usize, why: String| LabelsError::Line { path: origin.to_path_buf(), line, why };
    let lines: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).collect();
    let Some(&(_, first)) = lines.first() else {
        return Err(LabelsError::Invalid { path: origin.to_path_buf(), why: "no class names in the file".to_string() });
    };

    let names: Vec<(usize, String)> = if split_id(first).is_some() {
        let mut by_id: Vec<Option<(usize, String)>> = vec![None; lines.len()];
        for &(n, l) in &lines {
            let (id, name) = split_id(l).ok_or_else(|| line_err(n, format!("expected `id name` like line {}, got {l:?}", lines[0].0)))?;
            let slot = by_id
                .get_mut(id)
                .ok_or_else(|| line_err(n, format!("id {id} is out of range: {} classes need ids 0..{}", lines.len(), lines.len() - 1)))?;
            if let Some((prev, _)) = slot {
                return Err(line_err(n, format!("id {id} already used on line {prev}")));
            }
            *slot = Some((n, name.to_string()));
        }
        // Every slot is filled: ids are in range, unique, and as many as slots.
        by_id.into_iter().flatten().collect()
    } else {
        lines.iter().map(|&(n, l)| (n, l.to_string())).collect()
    };

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (n, name) in &names {
        if let Some(prev) = seen.insert(name, *n) {
            return Err(line_err(*n, format!("class name {name:?} already given on line {prev}")));
        }
    }
    Ok(names.into_iter().map(|(_, name)| name).collect())
}

/// Names for a model without a labels file: `class_0 .. class_{n-1}`.
pub fn generated(num_classes: usize) -> Vec<String> {
    (0..num_classes).map(|i| format!("class_{i}")).collect()
}

/// `"12 some name"` -> `(12, "some name")`; `None` unless the line is an
/// unsigned integer, whitespace, and a non-empty name.
fn split_id(line: &str) -> Option<(usize, &str)> {
    let (id, rest) = line.split_once(char::is_whitespace)?;
    let id: usize = id.parse().ok()?;
    let name = rest.trim();
    (!name.is_empty()).then_some((id, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<String> {
        parse(text, Path::new("labels.txt")).expect("valid labels")
    }

    fn parse_err(text: &str) -> String {
        parse(text, Path::new("labels.txt")).expect_err("invalid labels").to_string()
    }

    #[test]
    fn id_layout_places_names_by_id() {
        assert_eq!(parse_ok("1 air_drumming\n0 abseiling\n2 answering questions\n"), ["abseiling", "air_drumming", "answering questions"]);
    }

    #[test]
    fn name_layout_keeps_line_order_and_skips_blank_lines() {
        assert_eq!(parse_ok("  archery \n\nbowling\n3 point shot\n"), ["archery", "bowling", "3 point shot"]);
    }

    #[test]
    fn kinetics_list_of_the_repository_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/kinetics400.txt");
        let names = read(&path).expect("kinetics400.txt parses");
        assert_eq!(names.len(), 400);
        assert_eq!(names[5], "archery");
    }

    #[test]
    fn mixed_layout_names_the_line() {
        let e = parse_err("0 abseiling\n1 air_drumming\narchery\n");
        assert!(e.contains("labels.txt: line 3") && e.contains("id name"), "{e}");
    }

    #[test]
    fn gaps_and_repeats_in_ids_are_refused() {
        let e = parse_err("0 a\n2 b\n");
        assert!(e.contains("line 2") && e.contains("out of range"), "{e}");
        let e = parse_err("0 a\n0 b\n");
        assert!(e.contains("line 2") && e.contains("already used on line 1"), "{e}");
    }

    #[test]
    fn duplicate_and_missing_names_are_refused() {
        let e = parse_err("a\nb\na\n");
        assert!(e.contains("line 3") && e.contains("line 1"), "{e}");
        let e = parse_err("\n \n");
        assert!(e.contains("no class names"), "{e}");
    }

    #[test]
    fn unreadable_file_is_named() {
        let e = read(Path::new("/nonexistent/labels.txt")).expect_err("missing file").to_string();
        assert!(e.starts_with("/nonexistent/labels.txt: cannot read labels"), "{e}");
    }

    #[test]
    fn generated_names_count_from_zero() {
        assert_eq!(generated(3), ["class_0", "class_1", "class_2"]);
    }
}
