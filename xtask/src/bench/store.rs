//! The benchmark backing store: the standard files plus `files::BENCH` (100 000 pages), so
//! `bench::mm` can scale to 100k pages. About 420 MB, so only the memory-manager benchmark
//! loads it; built like the standard image ([`build_image`]) and rewritten only when the
//! file on disk differs.

use std::path::PathBuf;

use anyhow::{Context, Result};
use backing::{build_image, files};

use crate::backing_store::write_if_changed;
use crate::cargo;

/// File name of the benchmark image inside `<target>/xtask/`.
pub const FILE_NAME: &str = "bench-store.img";

/// Makes sure `<target>/xtask/bench-store.img` holds the benchmark image; returns its path.
pub fn ensure_bench_store() -> Result<PathBuf> {
    let dir = cargo::target_dir().join("xtask");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(FILE_NAME);
    if write_if_changed(&path, &build_image(&files::with_bench()))? {
        eprintln!("xtask: bench: wrote {}", path.display());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use backing::{Image, pattern};

    use super::*;

    /// The image the benchmark boots holds the benchmark file at its full size with its
    /// pattern, besides every standard file.
    #[test]
    fn the_bench_image_holds_the_bench_file() {
        let image = build_image(&files::with_bench());
        let parsed = Image::parse(&image).expect("the image parses");
        assert_eq!(parsed.files().len(), files::standard().len() + 1);
        let file = parsed.file(files::BENCH).expect("the bench file");
        assert_eq!(file.size, files::BENCH_PAGES * 4096);
        let offset = (files::BENCH_PAGES - 1) * 4096;
        let at = (file.start_block * 4096 + offset) as usize;
        let word = u64::from_be_bytes(image[at..at + 8].try_into().unwrap());
        assert_eq!(word, pattern(files::BENCH, offset));
    }
}
