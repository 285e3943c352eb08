//! What the benchmark runs on: cores, CPU model, and whether the CPU is
//! emulated (QEMU TCG), in which case absolute times are meaningless.

use serde::{Deserialize, Serialize};

/// How the CPU executes this process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "hypervisor")]
pub enum Execution {
    /// No hypervisor bit in CPUID.
    BareMetal,
    /// Hardware virtualisation under the named hypervisor (its CPUID
    /// signature, e.g. "KVMKVMKVM").
    Virtualized(String),
    /// QEMU's software emulation: CPUID signature "TCGTCGTCGTCG".
    Emulated,
    /// User-Mode Linux (`ARCH=um`): the kernel is a host process, guest
    /// code runs natively on the host CPU, one CPU, BPF interpreted (no
    /// JIT). Told by /proc/cpuinfo, not CPUID (which is the host's).
    UserMode,
}

impl Execution {
    /// Detect from CPUID: leaf 1 ECX bit 31 says a hypervisor is present,
    /// leaf 0x4000_0000 carries its 12-byte signature.
    pub fn detect() -> Execution {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        if Execution::is_uml_cpuinfo(&cpuinfo) {
            return Execution::UserMode;
        }
        match hypervisor_signature() {
            None => Execution::BareMetal,
            Some(sig) => Execution::classify(&sig),
        }
    }

    /// Classify a hypervisor signature.
    pub fn classify(sig: &str) -> Execution {
        if sig.starts_with("TCGTCGTCG") {
            Execution::Emulated
        } else {
            Execution::Virtualized(sig.to_string())
        }
    }

    /// UML's /proc/cpuinfo says `vendor_id : User Mode Linux` (and
    /// `model name : UML`).
    pub fn is_uml_cpuinfo(cpuinfo: &str) -> bool {
        cpuinfo.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                let (k, v) = (k.trim(), v.trim());
                (k == "vendor_id" && v == "User Mode Linux") || (k == "model name" && v == "UML")
            })
        })
    }

    pub fn emulated(&self) -> bool {
        *self == Execution::Emulated
    }

    /// For the table's heading.
    pub fn label(&self) -> String {
        match self {
            Execution::BareMetal => "bare metal".into(),
            Execution::Virtualized(s) => format!("virtualised (hypervisor {s:?})"),
            Execution::Emulated => "emulated (TCG)".into(),
            Execution::UserMode => "UML, native CPU, interpreted BPF".into(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
// __cpuid is a safe fn on newer toolchains, unsafe on older ones.
#[allow(unused_unsafe)]
fn hypervisor_signature() -> Option<String> {
    use std::arch::x86_64::__cpuid;
    // SAFETY: CPUID exists on every x86_64 CPU.
    let leaf1 = unsafe { __cpuid(1) };
    if leaf1.ecx & (1 << 31) == 0 {
        return None;
    }
    // SAFETY: as above; leaf 0x4000_0000 is the hypervisor range.
    let hv = unsafe { __cpuid(0x4000_0000) };
    let bytes: Vec<u8> = [hv.ebx, hv.ecx, hv.edx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    let sig = String::from_utf8_lossy(&bytes)
        .trim_end_matches('\0')
        .to_string();
    Some(if sig.is_empty() {
        "unknown".into()
    } else {
        sig
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn hypervisor_signature() -> Option<String> {
    None
}

/// The machine a report was measured on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Online CPUs.
    pub cores: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu: String,
    pub execution: Execution,
}

impl Machine {
    pub fn detect() -> Machine {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cores,
            cpu,
            execution: Execution::detect(),
        }
    }
}

/// Set by `fibneigh vm run` in the guest when it boots a kernel that `vm
/// build` made: which build that is (see [`kernel_build`]).
pub const KERNEL_BUILD_ENV: &str = "FIBNEIGH_KERNEL_BUILD";

/// Which build of the running kernel this is (series digest, profile,
/// architecture, config digest, base), as `fibneigh vm run` said; `None` outside such a
/// guest. `uname -r` cannot tell two series on one base apart.
pub fn kernel_build() -> Option<String> {
    std::env::var(KERNEL_BUILD_ENV)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `uname -r` of the running kernel.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_classify() {
        assert_eq!(Execution::classify("TCGTCGTCGTCG"), Execution::Emulated);
        assert_eq!(
            Execution::classify("KVMKVMKVM"),
            Execution::Virtualized("KVMKVMKVM".into())
        );
        assert!(Execution::Emulated.label().contains("emulated (TCG)"));
    }

    #[test]
    fn uml_is_told_by_cpuinfo() {
        let uml =
            "processor\t: 0\nvendor_id\t: User Mode Linux\nmodel name\t: UML\nmode\t\t: skas\n";
        assert!(Execution::is_uml_cpuinfo(uml));
        let host = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)\n";
        assert!(!Execution::is_uml_cpuinfo(host));
        assert!(!Execution::UserMode.emulated());
    }

    #[test]
    fn this_machine_is_described() {
        let m = Machine::detect();
        assert!(m.cores >= 1);
        assert!(!kernel_release().is_empty());
    }
}
