//! The lab against the running kernel (needs root). Each test builds its
//! own lab with fresh names; the lab's Drop removes it even when an
//! assertion fails.

use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use fibneigh::lab::{addr, netns, plan, Lab, Names, NeighSpec, NeighSysctl, Topology};
use fibneigh::traffic::{garp_frame, send_frame, unsolicited_na_frame};
use fibneigh_bpf::{nud, AttachIn};

mod common;

const OLD_MAC: [u8; 6] = [0x02, 0xf1, 0xb0, 0, 0, 0x0b];

fn standard_lab() -> (Names, Lab) {
    let names = Names::for_this_process();
    let lab = Lab::create(&Topology::standard(&names)).expect("create the lab");
    (names, lab)
}

/// `ip -n <ns> args...`, stdout.
fn ip(ns: &str, args: &[&str]) -> String {
    common::stdout_of(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// `ip neigh show nud all` for `dst` on `dev` in `ns`.
fn neigh_shown(ns: &str, dev: &str, dst: IpAddr) -> String {
    let dst = dst.to_string();
    ip(ns, &["neigh", "show", "nud", "all", "dev", dev, "to", &dst])
}

/// Whether `ping` from `ns` to `dst` gets an answer.
fn ping(ns: &str, dst: IpAddr) -> bool {
    Command::new("ip")
        .args(["netns", "exec", ns, "ping", "-c", "1", "-W", "2"])
        .arg(dst.to_string())
        .output()
        .expect("run ping")
        .status
        .success()
}

#[test]
#[ignore = "needs root"]
fn setup_and_teardown_leave_nothing_behind() {
    let names;
    {
        let (n, lab) = standard_lab();
        names = n;
        let listed = netns::list().expect("list");
        for ns in &lab.topology().namespaces {
            assert!(listed.contains(ns), "{ns} exists");
        }
        for (ns, ifaces) in lab.topology().interfaces() {
            for i in ifaces {
                assert!(lab.ifindex(ns, i).expect("ifindex") > 0, "{ns}/{i}");
            }
        }
        // The kernel stack forwards through the DUT, both families, to
        // both hosts.
        for dst in [
            IpAddr::from(addr::HOST_A4),
            addr::HOST_A6.into(),
            addr::HOST_B4.into(),
            addr::HOST_B6.into(),
        ] {
            assert!(ping(&names.client, dst), "client -> {dst}");
        }
        // Not a lab namespace: refused.
        assert!(lab.ifindex("fn0-elsewhere", "lo").is_err());
        // Only the lab's names in its namespaces.
        for line in ip(&names.switch, &["-o", "link"]).lines() {
            let name = line
                .split(": ")
                .nth(1)
                .unwrap_or("")
                .split('@')
                .next()
                .unwrap_or("");
            assert!(name == "lo" || name.starts_with(&names.prefix), "{name}");
        }
    }
    let listed = netns::list().expect("list");
    for ns in [
        &names.client,
        &names.dut,
        &names.switch,
        &names.host_a,
        &names.host_b,
    ] {
        assert!(!listed.contains(ns), "{ns} removed");
    }
}

#[test]
#[ignore = "needs root"]
fn a_failed_build_removes_what_it_made() {
    // Same names twice: the second build stops at its first namespace and
    // must not touch the first lab's.
    let names = Names::for_this_process();
    let t = Topology::standard(&names);
    let first = Lab::create(&t).expect("first lab");
    let err = Lab::create(&t)
        .err()
        .expect("second lab with the same names fails");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(
        netns::list().unwrap().contains(&names.dut),
        "first lab intact"
    );
    drop(first);

    // Valid on paper, refused by the kernel half-way (a bridge cannot be a
    // port of a bridge): everything built so far is removed.
    let names = Names::for_this_process();
    let mut t = Topology::standard(&names);
    let inner = format!("{}br1", names.prefix);
    t.bridges.push(plan::Bridge {
        ns: names.switch.clone(),
        name: inner.clone(),
        ports: vec![],
        mcast_snooping: true,
    });
    t.bridges.reverse();
    t.bridges[1].ports.push(inner);
    t.validate().expect("valid on paper");
    let err = Lab::create(&t).err().expect("the kernel refuses");
    eprintln!("expected failure: {err}");
    let listed = netns::list().unwrap();
    assert!(
        !listed.iter().any(|n| n.starts_with(&names.prefix)),
        "{listed:?}"
    );
}

/// Deletes the namespace even if the test fails.
struct Guard(String);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// A lab namespace named as process `pid`'s, created now: `pid` is
/// above pid_max (at most 2^22), so no process has it.
fn dead_run_namespace(pid: u32, tag: &str) -> (String, Guard) {
    assert!(pid > 1 << 22);
    let name = format!("{}{tag}", plan::run_prefix(pid));
    let guard = Guard(name.clone());
    netns::create(&name).expect("create");
    (name, guard)
}

#[test]
#[ignore = "needs root"]
fn leftovers_of_dead_runs_are_removed() {
    let (dead, _guard) = dead_run_namespace(0x7fff_fff0, "leftover");
    let (names, _lab) = standard_lab();
    let found = Lab::cleanup_leftovers().expect("cleanup");
    assert!(found.removed.contains(&dead), "{found:?}");
    assert!(found.stuck.is_empty(), "{found:?}");
    assert!(!netns::list().unwrap().contains(&dead));
    // This process's lab is alive and kept.
    assert!(netns::list().unwrap().contains(&names.dut));
}

#[test]
#[ignore = "needs root"]
fn a_namespace_only_named_like_a_lab_is_left_alone() {
    // Another tool's namespaces whose names look like a dead run's and
    // like this run's: no lab made them, so no sweep removes them.
    let theirs = format!("{}theirs", plan::run_prefix(0x7fff_fff4));
    let mine = format!("{}theirs", plan::run_prefix(std::process::id()));
    let _guards = (Guard(theirs.clone()), Guard(mine.clone()));
    for name in [&theirs, &mine] {
        common::stdout_of(Command::new("ip").args(["netns", "add", name]));
    }
    let (code, text) = common::fibneigh_with(&["clean"]);
    assert_eq!(code, Some(0), "{text}");
    let problems = Lab::with_leftovers(Vec::new()).expect("leftovers");
    assert!(problems.is_empty(), "{problems:?}");
    let listed = netns::list().unwrap();
    assert!(
        listed.contains(&theirs) && listed.contains(&mine),
        "{listed:?}"
    );
    // The same name made by a lab is a leftover once its run is gone.
    let _ = Command::new("ip").args(["netns", "del", &theirs]).output();
    netns::create(&theirs).expect("create");
    let found = Lab::cleanup_leftovers().expect("cleanup");
    assert!(found.removed.contains(&theirs), "{found:?}");
    assert!(!netns::made_here(&theirs), "its mark went with it");
}

#[test]
#[ignore = "needs root"]
fn a_namespace_this_run_left_behind_is_named_and_removed() {
    // Named as this process's and made without a lab: what a lab whose
    // drop failed to delete a namespace leaves.
    let orphan = format!("{}orphan", plan::run_prefix(std::process::id()));
    let _guard = Guard(orphan.clone());
    netns::create(&orphan).expect("create");
    let (names, lab) = standard_lab();
    let problems = Lab::with_leftovers(vec!["before".into()]).expect("leftovers");
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[1].contains(&orphan), "{problems:?}");
    let listed = netns::list().unwrap();
    assert!(!listed.contains(&orphan), "{listed:?}");
    // A live lab of this process is no leftover; once dropped, nothing is.
    assert!(listed.contains(&names.dut), "{listed:?}");
    drop(lab);
    let problems = Lab::with_leftovers(Vec::new()).expect("leftovers");
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
#[ignore = "needs root"]
fn fibneigh_clean_removes_the_namespaces_of_dead_runs_only() {
    let (dead, _guard) = dead_run_namespace(0x7fff_fff1, "clean");
    let (names, _lab) = standard_lab();
    let (code, text) = common::fibneigh_with(&["clean"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&dead),
        "the removed namespace is named: {text}"
    );
    let listed = netns::list().unwrap();
    assert!(!listed.contains(&dead), "{listed:?}");
    // This process is alive: its lab is kept.
    assert!(listed.contains(&names.dut), "{listed:?}");
}

/// Run `f` in a thread with a mount namespace of its own where /run is a
/// fresh tmpfs and /run/netns a plain directory, not a mount point;
/// nothing done there reaches the host's /run. Threads and processes `f`
/// starts are in that namespace too.
fn with_fresh_run_dir(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        use nix::mount::{mount, MsFlags};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare");
        let none = None::<&str>;
        mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).expect("private");
        mount(Some("tmpfs"), "/run", Some("tmpfs"), MsFlags::empty(), none).expect("tmpfs");
        std::fs::create_dir("/run/netns").expect("mkdir");
        f();
    })
    .join()
    .expect("the test thread");
}

#[test]
#[ignore = "needs root"]
fn creators_racing_for_one_name_leave_the_winner_its_mark() {
    // Threads of one process creating the same name at once (a name in
    // use by a live lab is created again only by mistake, but a loser
    // must still not take the winner's mark: without it no sweep knows
    // the namespace for a lab's). Exactly one wins each round.
    with_fresh_run_dir(|| {
        let mut lost_marks = Vec::new();
        for round in 0..100 {
            let name = format!("{}race{round}", plan::run_prefix(std::process::id()));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (name, barrier) = (name.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        netns::create(&name)
                    })
                })
                .collect();
            let results: Vec<_> = threads
                .into_iter()
                .map(|t| t.join().expect("a creator"))
                .collect();
            let won = results.iter().filter(|r| r.is_ok()).count();
            let marked = netns::made_here(&name);
            netns::delete(&name).expect("delete");
            assert_eq!(won, 1, "round {round}: {results:?}");
            for r in &results {
                if let Err(e) = r {
                    assert!(
                        matches!(e, fibneigh::lab::Error::Exists(n) if *n == name),
                        "{e}"
                    );
                }
            }
            if !marked {
                lost_marks.push(round);
            }
        }
        assert!(
            lost_marks.is_empty(),
            "rounds whose winner lost its mark: {lost_marks:?}"
        );
    });
}

#[test]
#[ignore = "needs root"]
fn a_namespace_is_removed_after_ip_netns_add_ran_beside_it() {
    // A machine where no `ip netns add` has run since boot.
    let ours = format!("{}mnt", plan::run_prefix(std::process::id()));
    let other = format!("{}ipr", plan::run_prefix(std::process::id()));
    with_fresh_run_dir(move || {
        netns::create(&ours).expect("create ours");
        // Another tool's namespace, made the way iproute2 makes it.
        common::stdout_of(Command::new("ip").args(["netns", "add", &other]));
        let deleted = netns::delete(&ours);
        let _ = Command::new("ip").args(["netns", "del", &other]).output();
        deleted.expect("delete ours after ip netns add");
        let listed = netns::list().unwrap();
        assert!(!listed.contains(&ours), "{listed:?}");
    });
}

#[test]
#[ignore = "needs root"]
fn fibneigh_clean_names_a_leftover_it_cannot_remove_and_removes_the_others() {
    // A machine where an older run's namespace was hidden by an
    // `ip netns add` that bind-mounted /run/netns over itself.
    with_fresh_run_dir(|| {
        use nix::mount::{mount, MsFlags};
        let none = None::<&str>;
        let stuck = format!("{}stuck", plan::run_prefix(0x7fff_fff2));
        let stuck_path = netns::path(&stuck);
        std::fs::write(&stuck_path, "").expect("file");
        // marked as a lab's, as netns::create marks them
        std::fs::create_dir_all(netns::MARK_DIR).expect("mark dir");
        std::fs::write(netns::mark(&stuck), "").expect("mark");
        mount(
            Some("/proc/self/ns/net"),
            &stuck_path,
            none,
            MsFlags::MS_BIND,
            none,
        )
        .expect("bind the namespace");
        mount(
            Some("/run/netns"),
            "/run/netns",
            none,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            none,
        )
        .expect("bind /run/netns over itself");
        let (gone, _guard) = dead_run_namespace(0x7fff_fff3, "gone");
        let (code, text) = common::fibneigh_with(&["clean"]);
        assert_eq!(code, Some(1), "{text}");
        assert!(
            text.contains(&format!("removed leftover network namespace {gone}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("warning: leftover network namespace {stuck}")),
            "{text}"
        );
        assert!(
            text.contains("umount /run/netns"),
            "the way out is named: {text}"
        );
        assert!(
            text.contains("1 leftover lab namespace(s) removed, 1 could not be"),
            "{text}"
        );
    });
}

#[test]
#[ignore = "needs root"]
fn neighbour_entries_round_trip_in_every_state() {
    let (n, lab) = standard_lab();
    let (ns, dev) = (&n.dut, &n.dut_host_if);
    // Slow timers so no entry changes state while it is checked.
    for v6 in [false, true] {
        for (param, value) in [
            (NeighSysctl::BaseReachableTimeMs, 600_000),
            (NeighSysctl::DelayFirstProbeTime, 600),
            (NeighSysctl::RetransTimeMs, 600_000),
        ] {
            lab.set_neigh_sysctl(ns, dev, v6, param, value)
                .expect("sysctl");
            let read = Lab::in_ns(ns, || fibneigh::lab::neigh::sysctl(dev, v6, param))
                .unwrap()
                .unwrap();
            assert_eq!(read, value.to_string());
        }
    }
    let states = [
        (nud::REACHABLE, "REACHABLE"),
        (nud::STALE, "STALE"),
        (nud::DELAY, "DELAY"),
        (nud::PROBE, "PROBE"),
        (nud::PERMANENT, "PERMANENT"),
        (nud::NOARP, "NOARP"),
        (nud::FAILED, "FAILED"),
        (nud::INCOMPLETE, "INCOMPLETE"),
    ];
    // An address nobody owns, so no answer changes the state under test.
    for dst in [IpAddr::from(addr::NOBODY4), addr::NOBODY6.into()] {
        for (state, name) in states {
            let lladdr = (state & (nud::FAILED | nud::INCOMPLETE) == 0).then_some(OLD_MAC);
            let spec = NeighSpec::new(dst, lladdr, state);
            lab.neigh_replace(ns, dev, &spec)
                .unwrap_or_else(|e| panic!("{dst} {name}: {e}"));
            let got = lab
                .neigh_get(ns, dev, dst)
                .expect("get")
                .unwrap_or_else(|| panic!("{dst} {name}: entry present"));
            // An entry set to DELAY by an administrator has never been
            // confirmed, so its timer (armed to fire at once) moves it to
            // PROBE: accept either.
            let also = if state == nud::DELAY {
                nud::PROBE
            } else {
                state
            };
            assert!(
                got.state == state || got.state == also,
                "{dst} {name}: got {}",
                nud::name(got.state)
            );
            if let Some(mac) = lladdr {
                assert_eq!(got.lladdr, Some(mac), "{dst} {name}");
            }
            let shown = ip(
                ns,
                &[
                    "neigh",
                    "show",
                    "nud",
                    "all",
                    "dev",
                    dev,
                    "to",
                    &dst.to_string(),
                ],
            );
            let also_name = if state == nud::DELAY { "PROBE" } else { name };
            assert!(
                shown.contains(name) || shown.contains(also_name),
                "{dst} {name}: ip shows {shown:?}"
            );
            // Start each state from no entry.
            assert!(
                lab.neigh_delete(ns, dev, dst).expect("delete"),
                "{dst} {name}"
            );
            assert_eq!(lab.neigh_get(ns, dev, dst).expect("get"), None);
        }
        assert!(!lab.neigh_delete(ns, dev, dst).expect("delete absent"));

        // Flags: extern_learn and managed.
        let mut spec = NeighSpec::new(dst, Some(OLD_MAC), nud::REACHABLE);
        spec.extern_learn = true;
        lab.neigh_replace(ns, dev, &spec).expect("extern_learn");
        let got = lab.neigh_get(ns, dev, dst).unwrap().unwrap();
        assert!(got.extern_learn && !got.managed, "{got:?}");
        let shown = neigh_shown(ns, dev, dst);
        assert!(shown.contains("extern_learn"), "{shown:?}");
        lab.neigh_delete(ns, dev, dst).unwrap();

        let mut spec = NeighSpec::new(dst, None, nud::NONE);
        spec.managed = true;
        lab.neigh_replace(ns, dev, &spec).expect("managed");
        let got = lab.neigh_get(ns, dev, dst).unwrap().unwrap();
        assert!(got.managed, "{got:?}");
        let shown = neigh_shown(ns, dev, dst);
        assert!(shown.contains("managed"), "{shown:?}");
        lab.neigh_delete(ns, dev, dst).unwrap();
    }
}

#[test]
#[ignore = "needs root"]
fn the_switch_suppresses_announcements_on_demand() {
    let (n, mut lab) = standard_lab();
    let (ns, dev) = (&n.dut, &n.dut_host_if);
    let b_mac = lab.mac(&n.host_b, &n.host_b_if).expect("host B's MAC");
    let cases = [
        (
            IpAddr::from(addr::HOST_B4),
            garp_frame(b_mac, addr::HOST_B4),
        ),
        (
            addr::HOST_B6.into(),
            unsolicited_na_frame(b_mac, addr::HOST_B6),
        ),
    ];
    for (dst, frame) in &cases {
        let stale = NeighSpec::new(*dst, Some(OLD_MAC), nud::STALE);

        // Polled with a deadline, not a fixed sleep: the frames are
        // handled in softirq, which a busy machine defers to ksoftirqd.
        let within_5s = |done: &dyn Fn() -> bool| {
            common::poll_until(Duration::from_secs(5), Duration::from_millis(20), done)
        };
        let dropped = |lab: &Lab| {
            let d = lab.announcements_dropped().expect("counters");
            d.gratuitous_arp + d.unsolicited_na
        };
        let lladdr = |lab: &Lab| lab.neigh_get(ns, dev, *dst).unwrap().unwrap().lladdr;

        lab.neigh_replace(ns, dev, &stale).expect("stale entry");
        lab.suppress_announcements(true).expect("on");
        let before = dropped(&lab);
        send_frame(&n.host_b, &n.host_b_if, frame.clone()).expect("send the announcement");
        within_5s(&|| dropped(&lab) > before);
        assert_eq!(dropped(&lab), before + 1, "{dst}: the switch dropped it");
        assert_eq!(
            lladdr(&lab),
            Some(OLD_MAC),
            "{dst}: announcement suppressed"
        );

        lab.suppress_announcements(false).expect("off");
        send_frame(&n.host_b, &n.host_b_if, frame.clone()).expect("send the announcement");
        within_5s(&|| lladdr(&lab) == Some(b_mac));
        assert_eq!(lladdr(&lab), Some(b_mac), "{dst}: announcement heard");
    }
    let dropped = lab.announcements_dropped().expect("counters");
    assert_eq!((dropped.gratuitous_arp, dropped.unsolicited_na), (1, 1));
}

#[test]
#[ignore = "needs root"]
fn forwarders_route_through_the_dut() {
    use fibneigh_bpf::probe::Probe;
    use fibneigh_bpf::Hook;
    use fibneigh_bpf::{Forwarder, Policy};
    use std::os::fd::AsFd;

    let (n, lab) = standard_lab();
    let dut = lab.open_ns(&n.dut).expect("open DUT namespace");
    let ifaces = [
        lab.ifindex(&n.dut, &n.dut_client_if).unwrap(),
        lab.ifindex(&n.dut, &n.dut_host_if).unwrap(),
    ];
    // Frames XDP redirects into a veth need an XDP program on its peer.
    let _peers = lab.xdp_pass_on_peers_of(&n.dut).expect("xdp_pass on peers");
    let mut probe = Probe::load().expect("load the probe");
    let dsts = [IpAddr::from(addr::HOST_A4), addr::HOST_A6.into()];
    for hook in [Hook::Tc, Hook::Xdp] {
        for &policy in Policy::ALL {
            let supported = probe.accepts_flag(policy.required_flags()).unwrap();
            let fwd = Forwarder::load(policy).expect("load");
            let attached: Vec<_> = ifaces
                .iter()
                .map(|&i| fwd.attach_in(dut.as_fd(), hook, i).expect("attach"))
                .collect();
            // The first round may meet unresolved neighbours (NO_NEIGH:
            // the stack resolves them); the second is all fast path.
            for dst in dsts {
                assert!(ping(&n.client, dst), "{policy} {hook:?}: client -> {dst}");
            }
            let before = fwd.counters().unwrap();
            for dst in dsts {
                assert!(
                    ping(&n.client, dst),
                    "{policy} {hook:?}: client -> {dst} again"
                );
            }
            let c = fwd.counters().unwrap().since(&before);
            eprintln!("{policy} {hook:?} supported={supported}: {c:?}");
            // Two families, request and reply each: at least 4 packets.
            let slow = if hook == Hook::Tc {
                c.redirect_neigh
            } else {
                c.neigh_pass
            };
            match policy {
                _ if !supported => {
                    assert!(c.lookups_returning(-(libc::EINVAL as i64)) >= 4, "{c:?}");
                    assert_eq!(c.redirect + c.redirect_neigh, 0, "{c:?}");
                }
                Policy::Baseline | Policy::Refresh => assert!(c.redirect >= 4, "{c:?}"),
                Policy::AlwaysNeigh => assert!(slow >= 4 && c.redirect == 0, "{c:?}"),
                Policy::StateAware => assert!(c.redirect + slow >= 4, "{c:?}"),
            }
            // Detached on drop: the stack alone forwards, nothing counted.
            drop(attached);
            let before = fwd.counters().unwrap();
            assert!(ping(&n.client, dsts[0]), "{policy} {hook:?}: detached");
            assert_eq!(
                fwd.counters().unwrap(),
                before,
                "{policy} {hook:?}: detached"
            );
        }
    }
}
