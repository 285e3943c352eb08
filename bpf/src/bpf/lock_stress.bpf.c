// SPDX-License-Identifier: GPL-2.0
/*
 * REFRESH where the kernel holds locks: one lookup, with
 * BPF_FIB_LOOKUP_NEIGH_STATE | BPF_FIB_LOOKUP_NEIGH_REFRESH, of one target
 * entry that userspace keeps forcing back to STALE, made from
 *  - a cls_bpf filter under a classful qdisc (htb): the filter runs inside
 *    the qdisc's enqueue, with its root lock held, so a STALE entry's
 *    neigh->lock is taken inside that lock (the order lockdep must accept);
 *  - BPF_PROG_TEST_RUN from tc and from XDP, on every CPU at once.
 * Each site counts its lookups by return code, and the STALE entries it
 * found (each one kicked towards DELAY).
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "fib.h"

char LICENSE[] SEC("license") = "GPL";

/* Where the lookup was made: the row of the counts. */
enum lock_stress_site {
	LOCK_STRESS_QDISC,
	LOCK_STRESS_TC_RUN,
	LOCK_STRESS_XDP_RUN,
	LOCK_STRESS_SITES,
};

/* The columns: one per return code, then a negative errno, then STALE
 * entries found.
 */
enum lock_stress_slot {
	LOCK_STRESS_ERRNO = FIBNEIGH_RET_MAX,
	LOCK_STRESS_STALE,
	LOCK_STRESS_SLOTS,
};

/* In the BTF, for the skeleton's types. */
const volatile enum lock_stress_site lock_stress_site_export = 0;
const volatile enum lock_stress_slot lock_stress_slot_export = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LOCK_STRESS_SITES * LOCK_STRESS_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* The lookup, as userspace sets it before loading. */
const volatile struct fib_neigh_params target = {};

static __always_inline void count(__u32 site, __u32 slot)
{
	__u32 key = site * LOCK_STRESS_SLOTS + slot;
	__u64 *c = bpf_map_lookup_elem(&counts, &key);

	if (c)
		(*c)++;
}

static __always_inline void lookup(void *ctx, __u32 site)
{
	struct fib_neigh_params p = target;
	long rc;

	rc = bpf_fib_lookup(ctx, (struct bpf_fib_lookup *)&p, sizeof(p),
			    FIBNEIGH_LOOKUP_NEIGH_STATE |
			    FIBNEIGH_LOOKUP_NEIGH_REFRESH);
	if (rc < 0 || rc >= FIBNEIGH_RET_MAX)
		count(site, LOCK_STRESS_ERRNO);
	else
		count(site, rc);
	if (rc == FIBNEIGH_RET_SUCCESS && p.nud_state == FIBNEIGH_NUD_STALE)
		count(site, LOCK_STRESS_STALE);
}

/* The filter under the qdisc: every frame passes on, unclassified (to the
 * qdisc's default class).
 */
SEC("tc")
int lock_stress_qdisc(struct __sk_buff *skb)
{
	lookup(skb, LOCK_STRESS_QDISC);
	return TC_ACT_OK;
}

SEC("tc")
int lock_stress_tc(struct __sk_buff *skb)
{
	lookup(skb, LOCK_STRESS_TC_RUN);
	return TC_ACT_OK;
}

SEC("xdp")
int lock_stress_xdp(struct xdp_md *xdp)
{
	lookup(xdp, LOCK_STRESS_XDP_RUN);
	return XDP_PASS;
}
