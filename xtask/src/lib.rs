//! The repository's own tooling, in Rust rather than shell: `cargo xtask <task>` (an alias in
//! `.cargo/config.toml`), with the same toolchain as the code and no install step.
//!
//! - [`ci`]: the test command's steps as data, and the summary of every one of them.
//! - [`tidy`] (over [`modules`]): no import circle, a core that names no broker, small files.
//! - [`links`]: every relative link and anchor in the Markdown resolves.
//! - [`boundaries`]: which crate may link which, from `cargo metadata`.

pub mod boundaries;
pub mod ci;
pub mod links;
pub mod modules;
pub mod tidy;

use std::path::PathBuf;

use anyhow::Context;
use cargo_metadata::{Metadata, MetadataCommand, TargetKind};

/// The workspace the tasks run on, read once.
pub struct Workspace {
    pub root: PathBuf,
    pub metadata: Metadata,
}

impl Workspace {
    pub fn read() -> anyhow::Result<Self> {
        let metadata = MetadataCommand::new().exec().context("cargo metadata")?;
        Ok(Self {
            root: metadata.workspace_root.clone().into_std_path_buf(),
            metadata,
        })
    }

    /// Each workspace crate's root file: its library's, or its binary's when it has none.
    pub fn crate_roots(&self) -> Vec<(String, PathBuf)> {
        self.metadata
            .workspace_packages()
            .into_iter()
            .filter_map(|package| {
                let target = package
                    .targets
                    .iter()
                    .find(|t| t.kind.contains(&TargetKind::Lib))
                    .or_else(|| {
                        package
                            .targets
                            .iter()
                            .find(|t| t.kind.contains(&TargetKind::Bin))
                    })?;
                Some((
                    package.name.to_string(),
                    target.src_path.clone().into_std_path_buf(),
                ))
            })
            .collect()
    }

    /// The files git tracks, relative to the root.
    pub fn tracked_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let output = std::process::Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(&self.root)
            .output()
            .context("git ls-files")?;
        anyhow::ensure!(output.status.success(), "git ls-files failed");
        Ok(output
            .stdout
            .split(|b| *b == 0)
            .filter(|f| !f.is_empty())
            .map(|f| PathBuf::from(String::from_utf8_lossy(f).into_owned()))
            .collect())
    }
}

pub fn tidy_check(workspace: &Workspace) -> anyhow::Result<Vec<String>> {
    tidy::check(&workspace.root, &workspace.crate_roots())
}

pub fn links_check(workspace: &Workspace) -> anyhow::Result<Vec<String>> {
    links::check(&workspace.root, &workspace.tracked_files()?)
}

pub fn boundaries_check(workspace: &Workspace) -> anyhow::Result<Vec<String>> {
    boundaries::check(&workspace.metadata)
}
