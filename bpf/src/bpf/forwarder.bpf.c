// SPDX-License-Identifier: GPL-2.0
/*
 * A router fast path in tc and XDP, with the neighbour policy chosen at load
 * time (docs/design.md). Three layers, as in Cilium's bpf/lib/fib.h:
 *
 *   1. parse:  Ethernet + IPv4/IPv6 header -> the public header's struct
 *              fib_neigh (its fib_neigh_fill_v4/_v6()), or "not ours" (the
 *              packet goes to the stack untouched);
 *   2. decide: one bpf_fib_lookup() with the policy's flags, then the
 *              policy's small function turns (rc, params) into an action;
 *   3. act:    decrement TTL / hop limit, then bpf_redirect() with the MACs
 *              from the lookup, bpf_redirect_neigh() (tc only), or pass.
 *
 * Nothing in the packet is written before the action is known to be a
 * redirect, so a passed packet is always the packet that arrived.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "fib.h"

char LICENSE[] SEC("license") = "GPL";

#define PACKET_HOST	0

/* Set by the loader before load; the verifier prunes the other policies. */
const volatile enum fibneigh_policy policy = POLICY_BASELINE;
/*
 * The flags every lookup passes to bpf_fib_lookup(), set by the loader with
 * the policy: SKIP_NEIGH for ALWAYS_NEIGH, NEIGH_STATE for STATE_AWARE,
 * NEIGH_REFRESH for REFRESH, none for BASELINE (the Rust
 * Policy::required_flags() is their one source).
 */
const volatile __u32 lookup_flags = 0;
/*
 * Count reported NUD states per packet (the scenarios read them). The
 * benchmarks turn this off so every policy does the same bookkeeping.
 */
const volatile bool nud_histogram = true;
/* The numbers of fib.h, for the Rust side (through the skeleton). */
FIBNEIGH_EXPORT_ENUMS;

/* Per-CPU counters, one per enum fibneigh_counter slot (fib.h). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &slot);

	if (c)
		*c += 1;
}

/* ---- layer 1: parse ------------------------------------------------- */

/* What the parse found: the header's lookup record; l3 points into the packet. */
struct fwd_pkt {
	struct fib_neigh fn;
	struct ethhdr *eth;
	void *l3;
};

/*
 * Fill `pkt` for a packet this program may forward, or return false: not
 * unicast IPv4/IPv6, or what the header's fib_neigh_fill_v4/_v6() refuse
 * (truncated, malformed, a length that does not fit the packet, IPv4
 * options, IPv6 hop-by-hop options or jumbogram, a TTL/hop limit that
 * expires here). `len` is the whole packet's length.
 */
static __always_inline bool parse(void *data, void *data_end, __u32 len,
				  __u32 ifindex, struct fwd_pkt *pkt)
{
	struct ethhdr *eth = data;
	__u32 l3_len;

	if ((void *)(eth + 1) > data_end)
		return false;
	/* Broadcast and multicast frames are the stack's. */
	if (eth->h_dest[0] & 1)
		return false;
	pkt->eth = eth;
	pkt->l3 = eth + 1;
	l3_len = len - sizeof(*eth);
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return fib_neigh_fill_v4(&pkt->fn, pkt->l3, data_end, l3_len,
					 ifindex);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return fib_neigh_fill_v6(&pkt->fn, pkt->l3, data_end, l3_len,
					 ifindex);
	return false;
}

/* ---- layer 2: lookup and policies ----------------------------------- */

/*
 * The policies answer with the header's actions; FIB_NEIGH_REDIRECT_NEIGH
 * means the neighbour path, which act() carries out in XDP by passing the
 * packet to the stack (counted apart).
 */

/* Lookup + bpf_redirect() with the cached MACs (docs/design.md). */
static __always_inline enum fib_neigh_action policy_baseline(long rc)
{
	return rc == FIBNEIGH_RET_SUCCESS ? FIB_NEIGH_REDIRECT : FIB_NEIGH_PASS;
}

/* Option 2: route only, the kernel's neighbour output path fills the MACs. */
static __always_inline enum fib_neigh_action policy_always_neigh(long rc)
{
	return rc == FIBNEIGH_RET_SUCCESS ? FIB_NEIGH_REDIRECT_NEIGH :
					    FIB_NEIGH_PASS;
}

/* Option 3: the fast path only while the entry is connected. */
static __always_inline enum fib_neigh_action
policy_state_aware(long rc, const struct fib_neigh_params *p)
{
	if (rc == FIBNEIGH_RET_SUCCESS && (p->nud_state & FIBNEIGH_NUD_CONNECTED))
		return FIB_NEIGH_REDIRECT;
	if (rc == FIBNEIGH_RET_SUCCESS || rc == FIBNEIGH_RET_NO_NEIGH)
		return FIB_NEIGH_REDIRECT_NEIGH;
	return FIB_NEIGH_PASS;
}

/* Option 3b: the helper re-validates STALE entries; act as baseline. */
static __always_inline enum fib_neigh_action policy_refresh(long rc)
{
	return policy_baseline(rc);
}

static __always_inline void count_lookup(long rc, __u32 flags,
					 const struct fib_neigh_params *p)
{
	__u8 nud = p->nud_state;

	count(rc >= 0 && rc < FIBNEIGH_RET_MAX ? CNT_RC_BASE + rc : CNT_RC_OTHER);
	/* nud_state is only an output with the flag and on these returns. */
	if (!nud_histogram || !(flags & FIBNEIGH_LOOKUP_NEIGH_STATE))
		return;
	if (rc != FIBNEIGH_RET_SUCCESS && rc != FIBNEIGH_RET_NO_NEIGH &&
	    rc != FIBNEIGH_RET_FRAG_NEEDED)
		return;
	if (nud == 0) {
		count(CNT_NUD_NONE);
		return;
	}
#pragma unroll
	for (int bit = 0; bit < 8; bit++)
		if (nud & (1U << bit))
			count(CNT_NUD_BIT0 + bit);
}

/* Look the packet up and let the load-time policy decide. */
static __always_inline enum fib_neigh_action decide(void *ctx,
						    struct fwd_pkt *pkt)
{
	struct fib_neigh_params *p = &pkt->fn.params;
	__u32 flags = lookup_flags;
	long rc;

	rc = bpf_fib_lookup(ctx, (struct bpf_fib_lookup *)p, sizeof(*p), flags);
	count_lookup(rc, flags, p);

	switch (policy) {
	case POLICY_ALWAYS_NEIGH:
		return policy_always_neigh(rc);
	case POLICY_STATE_AWARE:
		return policy_state_aware(rc, p);
	case POLICY_REFRESH:
		return policy_refresh(rc);
	default:
		return policy_baseline(rc);
	}
}

/* ---- layer 3: act --------------------------------------------------- */

/* As a router: one hop less (the header's fib_neigh_dec_ttl()). */
static __always_inline void decrement_ttl(struct fwd_pkt *pkt, void *data_end)
{
	fib_neigh_dec_ttl(&pkt->fn, pkt->l3, data_end);
}

/*
 * Carry out `act`; returns the program's verdict. `xdp` is a compile-time
 * constant in each entry point, so the XDP program never calls
 * bpf_redirect_neigh().
 */
static __always_inline int act(enum fib_neigh_action act, struct fwd_pkt *pkt,
			       void *data_end, bool xdp)
{
	int pass = xdp ? XDP_PASS : TC_ACT_OK;
	struct bpf_redir_neigh nh = {};
	long verdict;

	switch (act) {
	case FIB_NEIGH_REDIRECT:
		decrement_ttl(pkt, data_end);
		fib_neigh_set_macs(&pkt->fn, pkt->eth);
		verdict = bpf_redirect(pkt->fn.params.ifindex, 0);
		if (verdict == (xdp ? XDP_REDIRECT : TC_ACT_REDIRECT))
			count(CNT_REDIRECT);
		else
			count(CNT_DROP);
		return verdict;
	case FIB_NEIGH_REDIRECT_NEIGH:
		if (xdp) {
			/* XDP has no bpf_redirect_neigh(): the stack. */
			count(CNT_NEIGH_PASS);
			count(CNT_PASS);
			return pass;
		}
		fib_neigh_nexthop(&pkt->fn.params, &nh);
		decrement_ttl(pkt, data_end);
		verdict = bpf_redirect_neigh(pkt->fn.params.ifindex, &nh,
					     sizeof(nh), 0);
		if (verdict == TC_ACT_REDIRECT)
			count(CNT_REDIRECT_NEIGH);
		else
			count(CNT_DROP);
		return verdict;
	default:
		count(CNT_PASS);
		return pass;
	}
}

/* The whole pipeline, shared by both entry points. */
static __always_inline int forward(void *ctx, void *data, void *data_end,
				   __u32 len, __u32 ifindex, bool xdp)
{
	struct fwd_pkt pkt = {};
	enum fib_neigh_action a;

	if (!parse(data, data_end, len, ifindex, &pkt)) {
		count(CNT_SKIPPED);
		count(CNT_PASS);
		return xdp ? XDP_PASS : TC_ACT_OK;
	}
	a = decide(ctx, &pkt);
	return act(a, &pkt, data_end, xdp);
}

SEC("tc")
int forwarder_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	/* Frames for another host's MAC are not ours to route. */
	if (skb->pkt_type != PACKET_HOST) {
		count(CNT_SKIPPED);
		count(CNT_PASS);
		return TC_ACT_OK;
	}
	return forward(skb, data, data_end, skb->len, skb->ingress_ifindex,
		       false);
}

SEC("xdp")
int forwarder_xdp(struct xdp_md *xdp)
{
	void *data = (void *)(long)xdp->data;
	void *data_end = (void *)(long)xdp->data_end;

	return forward(xdp, data, data_end, data_end - data,
		       xdp->ingress_ifindex, true);
}
