//! `fibneigh vm series`: what scripts/series.sh needs to know of a base's
//! series (its patches, directory, subject prefix, branch), and an
//! author's identity checked for posting it.

use std::path::PathBuf;

use fibneigh_vm::base::KernelBase;
use fibneigh_vm::series::Author;
use fibneigh_vm::Series;

use super::{repo_root, Result};

/// What `vm series` asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct SeriesQuery {
    /// Which base's series: 7.3 (kernel-patches/) or 6.12
    /// (kernel-patches/6.12/).
    #[arg(long, default_value = "7.3")]
    pub base: KernelBase,
    /// Directory with the `series` file and patches [default: the base's].
    #[arg(long)]
    pub patches: Option<PathBuf>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = SeriesItem::Patches)]
    pub print: SeriesItem,
    /// Instead: check that IDENT, as `git var GIT_AUTHOR_IDENT` prints it,
    /// is someone to post the series as (a name, an email that is no
    /// placeholder) and print it as `Name <email>`.
    #[arg(long, value_name = "IDENT", conflicts_with = "print")]
    pub check_author: Option<String>,
    /// With --check-author: a placeholder email will do (the author of a
    /// local branch, never posted).
    #[arg(long, requires = "check_author")]
    pub allow_placeholder: bool,
}

/// What of the series `vm series` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SeriesItem {
    /// The patch files `series` names, in order, one path a line (each
    /// must exist).
    Patches,
    /// The series' directory.
    Dir,
    /// The subject prefix of the posted series.
    SubjectPrefix,
    /// The branch series.sh import and export use by default.
    Branch,
}

impl SeriesQuery {
    /// The answer, a line each: the author checked (as `Name <email>`), or
    /// the item asked for.
    pub fn lines(&self) -> Result<Vec<String>> {
        if let Some(ident) = &self.check_author {
            let author = Author::parse(ident)?;
            let author = if self.allow_placeholder {
                author
            } else {
                author.for_posting()?
            };
            return Ok(vec![author.to_string()]);
        }
        let dir = self
            .patches
            .clone()
            .unwrap_or_else(|| self.base.patches(&repo_root()));
        Ok(match self.print {
            SeriesItem::Patches => Series::parse(&dir)?
                .patches
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            SeriesItem::Dir => vec![dir.display().to_string()],
            SeriesItem::SubjectPrefix => vec![self.base.subject_prefix().to_string()],
            SeriesItem::Branch => vec![self.base.branch().to_string()],
        })
    }
}
