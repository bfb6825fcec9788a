//! Seed 001, `Executor.shutdown`: a `with` block of file copies.
//!
//! ```python
//! import shutil
//! with ThreadPoolExecutor(max_workers=4) as e:
//!     e.submit(shutil.copy, 'src1.txt', 'dest1.txt')
//!     e.submit(shutil.copy, 'src2.txt', 'dest2.txt')
//!     e.submit(shutil.copy, 'src3.txt', 'dest3.txt')
//!     e.submit(shutil.copy, 'src4.txt', 'dest4.txt')
//! ```
//!
//! The source files are created first in a fresh directory under the
//! system's temporary directory, which is removed at the end.
//!
//! What to observe: the block ends by dropping the pool, which is
//! `shutdown(wait=True)`, so right after it every copy is done without
//! anyone calling `result()`; then each destination holds its source's text.
//! The seed ignores the futures; here they are kept to report how many
//! bytes each copy wrote, or why it failed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use concurrent_futures::{Future, ThreadPoolExecutor};

/// A directory removed when dropped, also if the example panics.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        // The process id separates concurrent runs; the time separates a
        // run from a crashed earlier one that left its directory behind.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("concurrent-futures-copy-{}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            eprintln!("could not remove {}: {e}", self.0.display());
        }
    }
}

/// Runs the example.
pub fn main() {
    let dir = TempDir::new();
    println!("working in {}", dir.path().display());
    let names: Vec<(String, String)> = (1..=4)
        .map(|i| (format!("src{i}.txt"), format!("dest{i}.txt")))
        .collect();
    for (i, (src, _)) in (1..).zip(&names) {
        let path = dir.path().join(src);
        let text = format!("file number {i}\n").repeat(i * 100);
        fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    let copies: Vec<Future<u64>> = {
        let e = ThreadPoolExecutor::new(4).expect("four workers is a valid pool size");
        names
            .iter()
            .map(|(src, dest)| {
                let (src, dest) = (dir.path().join(src), dir.path().join(dest));
                e.submit_fallible(move || fs::copy(src, dest))
                    .expect("a pool that was never shut down accepts work")
            })
            .collect()
        // `e` is dropped here: shutdown(wait=True), the end of `with`.
    };

    let all_done = copies.iter().all(Future::done);
    println!("after the block, every copy is done: {all_done}");
    for ((src, dest), copy) in names.iter().zip(&copies) {
        match copy.result() {
            Ok(bytes) => {
                let read = |name: &str| fs::read(dir.path().join(name)).ok();
                let same = read(src).is_some() && read(src) == read(dest);
                println!("{src} -> {dest}: {bytes} bytes copied, same contents: {same}");
            }
            Err(e) => println!("{src} -> {dest} failed: {e}"),
        }
    }
}
