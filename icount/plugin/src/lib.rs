//! QEMU TCG plugin (plugin API v1: QEMU 7.2, Debian 12's
//! `qemu-system-x86`): guest instructions per call of the kernel functions
//! given as `helper=0xADDR`, split at each execution of a `marker=0xADDR`,
//! written as JSON to `out=PATH` when QEMU exits. The method is in the
//! `fibneigh-icount` crate's documentation.
//!
//! ```text
//! qemu-system-x86_64 -accel tcg -smp 1 \
//!     -plugin file=libfibneigh_icount_plugin.so,out=icount.json,helper=0x...,marker=0x...
//! ```
//!
//! It refuses to load (QEMU then exits) under user-mode emulation, for a
//! target other than x86_64, or with more than one vCPU: one counter is
//! shared by all vCPUs, so only one may run.

use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use fibneigh_icount::{call_target, Args, Recorder, KERNEL_BASE};
use qemu_plugin_sys::{
    qemu_info_t, qemu_plugin_cb_flags, qemu_plugin_id_t, qemu_plugin_insn, qemu_plugin_insn_data,
    qemu_plugin_insn_size, qemu_plugin_insn_vaddr, qemu_plugin_op, qemu_plugin_register_atexit_cb,
    qemu_plugin_register_vcpu_insn_exec_cb, qemu_plugin_register_vcpu_insn_exec_inline,
    qemu_plugin_register_vcpu_tb_trans_cb, qemu_plugin_tb, qemu_plugin_tb_get_insn,
    qemu_plugin_tb_n_insns, QEMU_PLUGIN_VERSION,
};

/// The API version this plugin is built for; QEMU refuses a plugin whose
/// version it does not support.
#[no_mangle]
pub static qemu_plugin_version: c_int = QEMU_PLUGIN_VERSION as c_int;

/// Kernel instructions executed; QEMU's generated code adds 1 before each.
static COUNTER: AtomicU64 = AtomicU64::new(0);
/// Where the helpers' `call rel32`s return to (translation only).
static RETURN_SITES: Mutex<Option<HashSet<u64>>> = Mutex::new(None);
static ARGS: OnceLock<Args> = OnceLock::new();
static RECORDER: Mutex<Option<Recorder>> = Mutex::new(None);

/// To QEMU's stderr (`qemu_plugin_outs` prints only with `-d plugin`).
fn say(text: &str) {
    eprintln!("fibneigh-icount: {text}");
}

fn recorder() -> MutexGuard<'static, Option<Recorder>> {
    RECORDER.lock().unwrap_or_else(|e| e.into_inner())
}

fn count() -> u64 {
    COUNTER.load(Ordering::Relaxed)
}

unsafe extern "C" fn on_marker(_vcpu: c_uint, udata: *mut c_void) {
    if let Some(r) = recorder().as_mut() {
        r.marker(udata as usize);
    }
}

unsafe extern "C" fn on_entry(_vcpu: c_uint, udata: *mut c_void) {
    let now = count();
    if let Some(r) = recorder().as_mut() {
        r.enter(udata as usize, now);
    }
}

unsafe extern "C" fn on_return_site(_vcpu: c_uint, _udata: *mut c_void) {
    let now = count();
    if let Some(r) = recorder().as_mut() {
        r.exit(now);
    }
}

/// The bytes of a translated instruction.
unsafe fn insn_bytes<'a>(insn: *const qemu_plugin_insn) -> &'a [u8] {
    let data = qemu_plugin_insn_data(insn) as *const u8;
    let size = qemu_plugin_insn_size(insn);
    if data.is_null() {
        &[]
    } else {
        std::slice::from_raw_parts(data, size)
    }
}

fn exec_cb(
    insn: *mut qemu_plugin_insn,
    cb: unsafe extern "C" fn(c_uint, *mut c_void),
    udata: usize,
) {
    // SAFETY: `insn` is the instruction being translated.
    unsafe {
        qemu_plugin_register_vcpu_insn_exec_cb(
            insn,
            Some(cb),
            qemu_plugin_cb_flags::QEMU_PLUGIN_CB_NO_REGS,
            udata as *mut c_void,
        )
    };
}

unsafe extern "C" fn on_translate(_id: qemu_plugin_id_t, tb: *mut qemu_plugin_tb) {
    let Some(args) = ARGS.get() else { return };
    let mut sites = RETURN_SITES.lock().unwrap_or_else(|e| e.into_inner());
    let sites = sites.get_or_insert_with(HashSet::new);
    for i in 0..qemu_plugin_tb_n_insns(tb) {
        let insn = qemu_plugin_tb_get_insn(tb, i);
        let vaddr = qemu_plugin_insn_vaddr(insn);
        if vaddr < KERNEL_BASE {
            continue;
        }
        // Callbacks first, then the count: the order does not matter
        // (both ends of a call are callbacks of the same kind).
        if let Some(m) = args.markers.iter().position(|&a| a == vaddr) {
            exec_cb(insn, on_marker, m);
        }
        if let Some(h) = args.helpers.iter().position(|&a| a == vaddr) {
            exec_cb(insn, on_entry, h);
        }
        if sites.contains(&vaddr) {
            exec_cb(insn, on_return_site, 0);
        }
        qemu_plugin_register_vcpu_insn_exec_inline(
            insn,
            qemu_plugin_op::QEMU_PLUGIN_INLINE_ADD_U64,
            COUNTER.as_ptr().cast(),
            1,
        );
        if let Some(target) = call_target(vaddr, insn_bytes(insn)) {
            if args.helpers.contains(&target) {
                sites.insert(vaddr + 5);
            }
        }
    }
}

unsafe extern "C" fn on_exit(_id: qemu_plugin_id_t, _udata: *mut c_void) {
    let (Some(args), Some(r)) = (ARGS.get(), recorder().take()) else {
        return;
    };
    let report = r.report(count());
    let written = serde_json::to_vec_pretty(&report)
        .map_err(|e| e.to_string())
        .and_then(|bytes| std::fs::write(&args.out, bytes).map_err(|e| e.to_string()));
    match written {
        Ok(()) => say(&format!(
            "{} counted calls in {} segments, report in {}",
            report.unmarked.calls + report.segments.iter().map(|s| s.calls).sum::<u64>(),
            report.segments.len(),
            args.out.display()
        )),
        Err(e) => say(&format!("could not write {}: {e}", args.out.display())),
    }
}

/// QEMU's entry point: check the machine, parse the arguments, register
/// the callbacks. Non-zero refuses the plugin (QEMU exits).
///
/// # Safety
///
/// Called by QEMU with a valid `info` and `argc` C strings in `argv`.
#[no_mangle]
pub unsafe extern "C" fn qemu_plugin_install(
    id: qemu_plugin_id_t,
    info: *const qemu_info_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    let Some(info) = info.as_ref() else {
        return -1;
    };
    let target = if info.target_name.is_null() {
        String::new()
    } else {
        CStr::from_ptr(info.target_name)
            .to_string_lossy()
            .into_owned()
    };
    if !info.system_emulation || target != "x86_64" {
        say(&format!(
            "needs qemu-system-x86_64 (this is {target:?}, system emulation: {})",
            info.system_emulation
        ));
        return -1;
    }
    let vcpus = info.__bindgen_anon_1.system;
    if vcpus.smp_vcpus != 1 || vcpus.max_vcpus != 1 {
        say(&format!(
            "needs exactly one vCPU (-smp 1): the counter is shared; got {} (max {})",
            vcpus.smp_vcpus, vcpus.max_vcpus
        ));
        return -1;
    }
    let argv: Vec<String> = (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            let p = *argv.add(i);
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        })
        .collect();
    let args = match Args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            say(&e.to_string());
            return -1;
        }
    };
    *recorder() = Some(Recorder::new(&args));
    if ARGS.set(args).is_err() {
        say("installed twice");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, Some(on_translate));
    qemu_plugin_register_atexit_cb(id, Some(on_exit), std::ptr::null_mut());
    0
}
