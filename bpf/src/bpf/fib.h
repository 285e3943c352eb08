/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The numbers the harness's programs and its Rust side share.
 *
 * The programs must build before a patched kernel (or its headers) exists:
 * the layout of struct bpf_fib_lookup with the series' nud_state (sharing
 * storage with sport) is the public header's struct fib_neigh_params
 * (include/fib_neigh.h), checked there against the 64 bytes the helper
 * expects.
 */
#ifndef FIBNEIGH_FIB_H
#define FIBNEIGH_FIB_H

/*
 * The numbers below are the ones the Rust side uses: it takes them from the
 * skeletons (libbpf-cargo turns every type of a program's BTF into a Rust
 * type), so they are written here only, as enums. An enum that only appears
 * in expressions is not in the BTF: a program whose skeleton has to carry
 * them says FIBNEIGH_EXPORT_ENUMS (at the end of this file).
 */

/* bpf_fib_lookup() flags (BPF_FIB_LOOKUP_* in linux/bpf.h). */
enum fibneigh_lookup_flag {
	FIBNEIGH_LOOKUP_DIRECT		= 1U << 0,
	FIBNEIGH_LOOKUP_OUTPUT		= 1U << 1,
	FIBNEIGH_LOOKUP_SKIP_NEIGH	= 1U << 2,
	FIBNEIGH_LOOKUP_TBID		= 1U << 3,
	FIBNEIGH_LOOKUP_SRC		= 1U << 4,
	FIBNEIGH_LOOKUP_MARK		= 1U << 5,
	FIBNEIGH_LOOKUP_VLAN		= 1U << 6,
	FIBNEIGH_LOOKUP_VLAN_INPUT	= 1U << 7,
	/* The series' flags (docs/design.md). */
	FIBNEIGH_LOOKUP_NEIGH_STATE	= 1U << 8,
	FIBNEIGH_LOOKUP_NEIGH_REFRESH	= 1U << 9,
};

/* NUD_* states (include/uapi/linux/neighbour.h). */
enum fibneigh_nud {
	FIBNEIGH_NUD_NONE	= 0x00,
	FIBNEIGH_NUD_INCOMPLETE	= 0x01,
	FIBNEIGH_NUD_REACHABLE	= 0x02,
	FIBNEIGH_NUD_STALE	= 0x04,
	FIBNEIGH_NUD_DELAY	= 0x08,
	FIBNEIGH_NUD_PROBE	= 0x10,
	FIBNEIGH_NUD_FAILED	= 0x20,
	FIBNEIGH_NUD_NOARP	= 0x40,
	FIBNEIGH_NUD_PERMANENT	= 0x80,
	FIBNEIGH_NUD_CONNECTED	= FIBNEIGH_NUD_PERMANENT | FIBNEIGH_NUD_NOARP |
				  FIBNEIGH_NUD_REACHABLE,
};

/* Return codes of bpf_fib_lookup() (BPF_FIB_LKUP_RET_* in linux/bpf.h). */
enum fibneigh_ret {
	FIBNEIGH_RET_SUCCESS		= 0,
	FIBNEIGH_RET_BLACKHOLE		= 1,
	FIBNEIGH_RET_UNREACHABLE	= 2,
	FIBNEIGH_RET_PROHIBIT		= 3,
	FIBNEIGH_RET_NOT_FWDED		= 4,
	FIBNEIGH_RET_FWD_DISABLED	= 5,
	FIBNEIGH_RET_UNSUPP_LWT		= 6,
	FIBNEIGH_RET_NO_NEIGH		= 7,
	FIBNEIGH_RET_FRAG_NEEDED	= 8,
	FIBNEIGH_RET_NO_SRC_ADDR	= 9,
	FIBNEIGH_RET_VLAN_FAILURE	= 10,
	FIBNEIGH_RET_MAX,		/* one past the last */
};

/*
 * The forwarder's neighbour policies (docs/design.md), chosen by its
 * `policy` in read-only data; the Rust Policy enum takes these numbers.
 */
enum fibneigh_policy {
	POLICY_BASELINE		= 0,
	POLICY_ALWAYS_NEIGH	= 1,
	POLICY_STATE_AWARE	= 2,
	POLICY_REFRESH		= 3,
};

/*
 * Slots of the forwarder's per-CPU array `counters`; the Rust Counters
 * reads them by these numbers.
 */
enum fibneigh_counter {
	CNT_RC_BASE = 0,			/* lookups by rc 0..10 */
	CNT_RC_OTHER = CNT_RC_BASE + FIBNEIGH_RET_MAX,	/* anything else, errnos */
	CNT_NUD_NONE,				/* nud_state == NUD_NONE */
	CNT_NUD_BIT0,				/* 8 slots: one per NUD bit */
	CNT_REDIRECT = CNT_NUD_BIT0 + 8,	/* bpf_redirect() */
	CNT_REDIRECT_NEIGH,			/* bpf_redirect_neigh() */
	CNT_PASS,				/* handed to the stack */
	CNT_DROP,				/* a redirect helper refused */
	CNT_NEIGH_PASS,				/* XDP passes tc would redirect_neigh */
	CNT_SKIPPED,				/* passes without a lookup */
	CNT_MAX,
};

/*
 * struct fib_neigh_params, the layout of struct bpf_fib_lookup with the
 * series' nud_state, comes from the public header, which the programs here
 * use as any other program would.
 */
#include "fib_neigh.h"

/*
 * The public header spells the same uAPI numbers as macros for programs
 * that do not include this file: the two must never differ.
 */
_Static_assert(FIB_NEIGH_F_DIRECT == FIBNEIGH_LOOKUP_DIRECT, "DIRECT");
_Static_assert(FIB_NEIGH_F_NEIGH_STATE == FIBNEIGH_LOOKUP_NEIGH_STATE,
	       "NEIGH_STATE");
_Static_assert(FIB_NEIGH_F_NEIGH_REFRESH == FIBNEIGH_LOOKUP_NEIGH_REFRESH,
	       "NEIGH_REFRESH");
_Static_assert(FIB_NEIGH_NUD_REACHABLE == FIBNEIGH_NUD_REACHABLE, "REACHABLE");
_Static_assert(FIB_NEIGH_NUD_STALE == FIBNEIGH_NUD_STALE, "STALE");
_Static_assert(FIB_NEIGH_NUD_NOARP == FIBNEIGH_NUD_NOARP, "NOARP");
_Static_assert(FIB_NEIGH_NUD_PERMANENT == FIBNEIGH_NUD_PERMANENT, "PERMANENT");
_Static_assert(FIB_NEIGH_NUD_CONNECTED == FIBNEIGH_NUD_CONNECTED, "CONNECTED");
_Static_assert(FIB_NEIGH_RET_SUCCESS == FIBNEIGH_RET_SUCCESS, "RET_SUCCESS");
_Static_assert(FIB_NEIGH_RET_NO_NEIGH == FIBNEIGH_RET_NO_NEIGH, "RET_NO_NEIGH");

/*
 * One of each enum above, so that a program that defines a variable of it
 * carries them all in its BTF (hence in its skeleton). Never read.
 */
struct fibneigh_enums {
	enum fibneigh_lookup_flag	lookup_flag;
	enum fibneigh_nud		nud;
	enum fibneigh_ret		ret;
	enum fibneigh_policy		policy;
	enum fibneigh_counter		counter;
};

#define FIBNEIGH_EXPORT_ENUMS \
	const volatile struct fibneigh_enums fibneigh_enums = {}

/*
 * A tc and an XDP program, NAME_tc and NAME_xdp, each running BODY(ctx)
 * and letting the frame go on: the two program types take the helper's two
 * paths, for test runs.
 */
#define FIB_TC_AND_XDP(name, body)		\
SEC("tc")					\
int name##_tc(struct __sk_buff *skb)		\
{						\
	body(skb);				\
	return TC_ACT_OK;			\
}						\
						\
SEC("xdp")					\
int name##_xdp(struct xdp_md *xdp)		\
{						\
	body(xdp);				\
	return XDP_PASS;			\
}

#endif /* FIBNEIGH_FIB_H */
