//! Making written files durable.

use std::fs::File;
use std::path::Path;

/// fsyncs `path` and its parent directory; returns the file's size.
pub fn sync_file_and_dir(path: &Path) -> std::io::Result<u64> {
    let f = File::open(path)?;
    f.sync_all()?;
    let len = f.metadata()?.len();
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(len)
}
