//! Somebody else's forwarder: one program of a BPF object file, loaded as
//! it is (no maps filled, no globals set) and attached at the hook its
//! section names, for the harness's "forwarder on trial" runs. Programs
//! that need their own loader to fill maps belong to the command form of
//! the harness instead.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use libbpf_rs::{Object, ObjectBuilder, ProgramType, TC_INGRESS};

use crate::attach::{self, Attachment, EnteredNetns};
use crate::{Error, Hook, Result};

/// A loaded object and the program of it that forwards.
pub struct ObjectProgram {
    object: Object,
    program: String,
    hook: Hook,
    path: PathBuf,
}

impl ObjectProgram {
    /// Open and load `path`, and pick the program whose section or name is
    /// `program` (or the only XDP/tc program when `program` is `None`).
    pub fn load(path: &Path, program: Option<&str>) -> Result<Self> {
        let bad = |reason: String| Error::Object {
            path: path.to_path_buf(),
            reason,
        };
        let open = ObjectBuilder::default()
            .open_file(path)
            .map_err(|e| bad(format!("cannot open it: {e}")))?;
        let object = open
            .load()
            .map_err(|e| bad(format!("the kernel did not load it: {e}")))?;
        let mut candidates = Vec::new();
        for p in object.progs() {
            let hook = match p.prog_type() {
                ProgramType::Xdp => Hook::Xdp,
                ProgramType::SchedCls => Hook::Tc,
                _ => continue,
            };
            candidates.push((
                p.name().to_string_lossy().into_owned(),
                p.section().to_string_lossy().into_owned(),
                hook,
            ));
        }
        let names = || {
            candidates
                .iter()
                .map(|(n, s, _)| format!("{n} (section {s})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let chosen = match program {
            Some(want) => candidates
                .iter()
                .find(|(n, s, _)| n == want || s == want)
                .ok_or_else(|| {
                    bad(format!(
                        "no XDP or tc program named {want:?} (it has: {})",
                        if candidates.is_empty() {
                            "none".into()
                        } else {
                            names()
                        }
                    ))
                })?,
            None => match candidates.as_slice() {
                [one] => one,
                [] => return Err(bad("it has no XDP or tc program".into())),
                _ => {
                    return Err(bad(format!(
                        "it has several XDP/tc programs, name one: {}",
                        names()
                    )))
                }
            },
        };
        let (program, hook) = (chosen.0.clone(), chosen.2);
        Ok(Self {
            object,
            program,
            hook,
            path: path.to_path_buf(),
        })
    }

    /// The hook the program's type asks for.
    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// The program's name.
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The object file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Attach to `ifindex` in `netns` (the calling thread enters it for the
    /// attach and returns): XDP with a BPF link, tc as an ingress filter.
    pub fn attach_in(&self, netns: BorrowedFd<'_>, ifindex: u32) -> Result<Attachment> {
        let _inside = EnteredNetns::enter(netns)?;
        let prog = self
            .object
            .progs_mut()
            .find(|p| p.name().to_string_lossy() == self.program)
            .ok_or_else(|| Error::Object {
                path: self.path.clone(),
                reason: format!("program {} vanished after loading", self.program),
            })?;
        match self.hook {
            Hook::Xdp => attach::xdp(&prog, ifindex),
            Hook::Tc => attach::tc(prog.as_fd(), ifindex, TC_INGRESS),
        }
    }
}
