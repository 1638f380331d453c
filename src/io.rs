//! Table output: CSV files written whole and atomically (a crash never leaves half a table).

use crate::error::{Error, Result};
use std::path::Path;

/// Write `header` and `rows` as CSV (quoted where needed) to `path`, atomically.
pub fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| Error::io("format", path, std::io::Error::other(e.to_string()));
    w.write_record(header).map_err(fail)?;
    for r in rows {
        w.write_record(r).map_err(fail)?;
    }
    let bytes = w.into_inner().map_err(|e| Error::io("format", path, std::io::Error::other(e.to_string())))?;
    crate::checkpoint::atomic_write(path, &bytes)
}
