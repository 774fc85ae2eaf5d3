//! Video lists: `path label` lines (PaddleVideo, mmaction2 and PySlowFast's
//! space-separated `train.csv`) or comma-separated files with a header. A
//! bad line is an error naming the file and line, before any training.

use std::path::{Path, PathBuf};

use crate::recipe::sections::ListFormat;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Path as resolved against the root.
    pub path: PathBuf,
    pub label: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{path}: cannot read the list: {why}")]
    Read { path: PathBuf, why: String },
    #[error("{path}:{line}: {why}")]
    Line { path: PathBuf, line: usize, why: String },
    #[error("{path}: the list has no samples")]
    Empty { path: PathBuf },
}

/// Reads a list; relative paths are joined to `root` when given. Labels
/// must be below `num_classes`.
pub fn read_list(path: &Path, root: Option<&Path>, format: ListFormat, num_classes: usize) -> Result<Vec<Sample>, ListError> {
    let text = std::fs::read_to_string(path).map_err(|e| ListError::Read { path: path.to_path_buf(), why: e.to_string() })?;
    let line_err = |line: usize, why: String| ListError::Line { path: path.to_path_buf(), line, why };
    let mut samples = Vec::new();
    let mut columns: Option<(usize, usize)> = None;
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (file, label) = match format {
            ListFormat::PathLabel => {
                // The label is the last field, so paths may contain spaces.
                let (file, label) = line
                    .rsplit_once(char::is_whitespace)
                    .ok_or_else(|| line_err(line_no, format!("expected `path label`, got {line:?}")))?;
                (file.trim().to_string(), label.to_string())
            }
            ListFormat::Csv => {
                let fields: Vec<&str> = line.split(',').map(|f| f.trim().trim_matches('"')).collect();
                let Some((pc, lc)) = columns else {
                    columns = Some(csv_header(&fields).map_err(|why| line_err(line_no, why))?);
                    continue;
                };
                let get = |i: usize| fields.get(i).map(|s| s.to_string());
                match (get(pc), get(lc)) {
                    (Some(f), Some(l)) => (f, l),
                    _ => return Err(line_err(line_no, format!("expected at least {} fields, got {}", pc.max(lc) + 1, fields.len()))),
                }
            }
        };
        let label: usize = label.parse().map_err(|_| line_err(line_no, format!("label {label:?} is not a non-negative integer")))?;
        if label >= num_classes {
            return Err(line_err(line_no, format!("label {label} is out of range for {num_classes} classes")));
        }
        if file.is_empty() {
            return Err(line_err(line_no, "empty path".into()));
        }
        let file = PathBuf::from(file);
        let path = match root {
            Some(r) if file.is_relative() => r.join(file),
            _ => file,
        };
        samples.push(Sample { path, label });
    }
    if samples.is_empty() {
        return Err(ListError::Empty { path: path.to_path_buf() });
    }
    Ok(samples)
}

fn csv_header(fields: &[&str]) -> Result<(usize, usize), String> {
    let find = |names: &[&str]| fields.iter().position(|f| names.contains(&f.to_ascii_lowercase().as_str()));
    match (find(&["path", "video", "filename", "file"]), find(&["label", "label_id", "class_id"])) {
        (Some(p), Some(l)) => Ok((p, l)),
        _ => Err(format!("CSV header {fields:?} must name a path column (path/video/filename) and a label column (label/label_id)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn path_label_lines_with_root_and_spaces() {
        let f = write("# comment\na/b.mp4 3\n\nwith space/c.avi 0\n/abs/d.mp4 1\n");
        let s = read_list(f.path(), Some(Path::new("/data")), ListFormat::PathLabel, 4).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0], Sample { path: "/data/a/b.mp4".into(), label: 3 });
        assert_eq!(s[1].path, PathBuf::from("/data/with space/c.avi"));
        assert_eq!(s[2].path, PathBuf::from("/abs/d.mp4"));
    }

    #[test]
    fn csv_with_header_in_any_order() {
        let f = write("label,video,split\n2,x.mp4,train\n0,y.mp4,train\n");
        let s = read_list(f.path(), None, ListFormat::Csv, 3).unwrap();
        assert_eq!(s[0], Sample { path: "x.mp4".into(), label: 2 });
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let f = write("a.mp4 1\nb.mp4 cat\n");
        let e = read_list(f.path(), None, ListFormat::PathLabel, 4).unwrap_err().to_string();
        assert!(e.contains(":2:") && e.contains("cat"), "{e}");
        let f = write("a.mp4 7\n");
        let e = read_list(f.path(), None, ListFormat::PathLabel, 4).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
        let f = write("\n# nothing\n");
        assert!(matches!(read_list(f.path(), None, ListFormat::PathLabel, 4), Err(ListError::Empty { .. })));
    }
}
