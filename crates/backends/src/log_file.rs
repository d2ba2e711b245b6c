//! A service's output kept in a file that rotates by size: `service.log` is the newest, then
//! `service.log.1` and so on up to the number kept.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

/// Where and how much output to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileSpec {
    /// The file.
    pub path: PathBuf,
    /// Rotate once it would pass this size.
    pub max_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep: usize,
}

/// An open, rotating log file.
#[derive(Debug)]
pub struct RotatingFile {
    spec: LogFileSpec,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens (appends to) the file.
    pub fn open(spec: LogFileSpec) -> std::io::Result<RotatingFile> {
        if let Some(dir) = spec.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile { spec, file, size })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut p = self.spec.path.clone().into_os_string();
        p.push(format!(".{n}"));
        p.into()
    }

    /// Appends one line, rotating first if it would pass the size limit.
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > self.spec.max_bytes {
            self.rotate()?;
        }
        writeln!(self.file, "{line}")?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.spec.keep == 0 {
            self.file.set_len(0)?;
        } else {
            for n in (1..self.spec.keep).rev() {
                let from = self.numbered(n);
                if from.exists() {
                    std::fs::rename(&from, self.numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.spec.path, self.numbered(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.spec.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("svc.log");
        let mut f = RotatingFile::open(LogFileSpec {
            path: path.clone(),
            max_bytes: 10,
            keep: 2,
        })
        .unwrap();
        for line in ["aaaa", "bbbb", "cccc", "dddd", "eeee"] {
            f.write_line(line).unwrap();
        }
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), "eeee\n");
        assert_eq!(read(&dir.path().join("svc.log.1")), "cccc\ndddd\n");
        assert_eq!(read(&dir.path().join("svc.log.2")), "aaaa\nbbbb\n");
        assert!(!dir.path().join("svc.log.3").exists());
    }
}
