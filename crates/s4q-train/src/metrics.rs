//! Append-only JSON-lines metrics, flushed per line so an interrupted run keeps its history.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// A `metrics.jsonl` file.
pub struct MetricsLog {
    file: File,
}

impl MetricsLog {
    /// Opens `path`, truncating unless `append` (resumed runs append).
    pub fn open(path: &Path, append: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { file })
    }

    /// Writes one JSON object as a line.
    pub fn write(&mut self, value: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{value}")?;
        self.file.flush()?;
        Ok(())
    }
}
