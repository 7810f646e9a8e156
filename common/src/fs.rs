//! The one atomic write: a temporary file in the destination's folder, written, fsynced, renamed
//! over the destination, then the folder fsynced. Readers (and a run that crashed, even with
//! `kill -9` or a power cut) see the old file or the new one, never half of one; a failed write
//! leaves no temporary file behind.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A file being written under a temporary name beside its destination. [`AtomicFile::commit`]
/// moves it into place; dropping it without committing deletes it (every error path).
pub struct AtomicFile {
    file: tempfile::NamedTempFile,
    dest: PathBuf,
}

impl AtomicFile {
    /// Starts `dest`: the temporary file is `.NAME.XXXXXX.tmp.EXT` in `dest`'s folder (same file
    /// system, so the rename is atomic; the extension kept last for writers that pick a format
    /// by it), created with mode 0644 like an ordinary file.
    pub fn create(dest: &Path) -> io::Result<Self> {
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.is_empty() || dest.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a file path (it is empty or a folder)"));
        }
        let mut builder = tempfile::Builder::new();
        let prefix = format!(".{name}.");
        let suffix = match dest.extension() {
            Some(ext) => format!(".tmp.{}", ext.to_string_lossy()),
            None => ".tmp".to_string(),
        };
        builder.prefix(&prefix).suffix(&suffix);
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
        let file = builder.tempfile_in(parent_dir(dest))?;
        Ok(AtomicFile { file, dest: dest.to_path_buf() })
    }

    /// The temporary path, for writers that open files by name (burn records, ONNX savers). What
    /// they write there is fsynced by `commit` like bytes written through [`Write`].
    pub fn temp_path(&self) -> &Path {
        self.file.path()
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// fsync the data, rename over the destination, fsync the folder.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.flush()?;
        // Reopened by path: a writer may have replaced the file behind our handle.
        File::open(self.file.path())?.sync_all()?;
        let dest = self.dest.clone();
        self.file.persist(&dest).map_err(|e| e.error)?;
        sync_dir(parent_dir(&dest))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes `bytes` to `dest` atomically (see the module docs).
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Moves a fully written folder into place atomically: fsyncs every file in `tmp` and `tmp`
/// itself, replaces `dest` (an older folder of the same name is removed first), renames, and
/// fsyncs the parent. After a crash `dest` is complete or absent.
pub fn commit_dir(tmp: &Path, dest: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(tmp)? {
        let path = entry?.path();
        if path.is_file() {
            File::open(&path)?.sync_all()?;
        }
    }
    sync_dir(tmp)?;
    if dest.exists() {
        std::fs::remove_dir_all(dest)?;
    }
    std::fs::rename(tmp, dest)?;
    sync_dir(parent_dir(dest))
}

/// fsync a folder so a rename inside it survives a power cut (no-op where folders cannot be
/// opened, e.g. Windows).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect()
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(leftovers(d.path()).is_empty());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        }
    }

    #[test]
    fn dropped_without_commit_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("model.onnx");
        write_atomic(&p, b"good").unwrap();
        {
            let mut f = AtomicFile::create(&p).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read(&p).unwrap(), b"good");
        assert!(leftovers(d.path()).is_empty());
    }

    #[test]
    fn writer_by_path_is_committed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.bin");
        let f = AtomicFile::create(&p).unwrap();
        std::fs::write(f.temp_path(), b"by path").unwrap();
        f.commit().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"by path");
    }

    #[test]
    fn refuses_folders_and_missing_parents() {
        let d = tempfile::tempdir().unwrap();
        assert!(write_atomic(d.path(), b"x").is_err());
        assert!(write_atomic(&d.path().join("no/such/dir/f"), b"x").is_err());
    }

    #[test]
    fn commit_dir_replaces_an_older_folder() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("epoch-001");
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("stale"), b"x").unwrap();
        let tmp = d.path().join(".epoch-001.tmp");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("state.json"), b"{}").unwrap();
        commit_dir(&tmp, &dest).unwrap();
        assert!(dest.join("state.json").is_file());
        assert!(!dest.join("stale").exists());
        assert!(!tmp.exists());
    }
}
