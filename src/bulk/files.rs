//! Where an export's files are kept: a directory per job under the data directory. The job
//! and the download route see them only through `ExportFiles`, so that an object store can
//! take the directory's place without either changing.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub trait ExportFiles: Send + Sync {
    /// A new file of `job`, written from the start (a job that runs again writes anew).
    fn create(&self, job: &str, name: &str) -> io::Result<Box<dyn Write + Send>>;
    /// A finished file of `job`, to send: its path on this machine.
    fn path(&self, job: &str, name: &str) -> io::Result<PathBuf>;
    /// Every file of `job` (cancelled, expired, or about to run again).
    fn remove(&self, job: &str) -> io::Result<()>;
}

/// Files under `<data dir>/exports/<job>/`, readable by the server's user only.
pub struct Directory {
    root: PathBuf,
}

impl Directory {
    pub fn new(root: PathBuf) -> Directory {
        Directory { root }
    }

    fn dir(&self, job: &str) -> io::Result<PathBuf> {
        // job ids and file names are the server's own (uuids, `Type-n.ndjson`); anything else
        // is refused before it reaches the file system
        if !safe(job) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad job id"));
        }
        Ok(self.root.join(job))
    }
}

fn safe(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

impl ExportFiles for Directory {
    fn create(&self, job: &str, name: &str) -> io::Result<Box<dyn Write + Send>> {
        let dir = self.dir(job)?;
        if !safe(name) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad file name"));
        }
        create_private_dir(&dir)?;
        let file = private_file(&dir.join(name))?;
        Ok(Box::new(io::BufWriter::with_capacity(256 * 1024, file)))
    }

    fn path(&self, job: &str, name: &str) -> io::Result<PathBuf> {
        if !safe(name) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
        }
        Ok(self.dir(job)?.join(name))
    }

    fn remove(&self, job: &str) -> io::Result<()> {
        match std::fs::remove_dir_all(self.dir(job)?) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn private_file(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_outside_never_leave_the_job_s_directory() {
        let dir = Directory::new(PathBuf::from("/tmp/x"));
        for bad in ["../etc", "..", "a/b", "", ".hidden", "a\\b", "a\0b"] {
            assert!(dir.path("job", bad).is_err(), "{bad:?}");
            assert!(dir.path(bad, "f.ndjson").is_err(), "{bad:?}");
        }
        assert_eq!(
            dir.path("job-1", "Patient-1.ndjson").unwrap(),
            PathBuf::from("/tmp/x/job-1/Patient-1.ndjson")
        );
    }
}
