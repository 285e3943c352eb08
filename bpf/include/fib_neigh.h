/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * fib_neigh.h - neighbour-state-aware forwarding for tc and XDP programs,
 * one object for every kernel.
 *
 * bpf_fib_lookup() returns SUCCESS with the cached MAC of a STALE
 * neighbour, and a program that then calls bpf_redirect() never lets the
 * kernel re-validate it: when an IP moves to a new MAC and no gratuitous ARP
 * arrives, traffic goes to the dead MAC for good. With the series this
 * header is for, the helper reports the neighbour's NUD state
 * (BPF_FIB_LOOKUP_NEIGH_STATE) and can kick a stale entry into
 * re-validation (BPF_FIB_LOOKUP_NEIGH_REFRESH), so a program keeps the
 * cheap bpf_redirect() while the entry is connected.
 *
 * NOT UPSTREAM YET: the two flags, their values and the nud_state field
 * below are those of the patch series in this repository
 * (kernel-patches/), not of a released kernel. They may change in review.
 *
 * Three layers, as in Cilium's bpf/lib/fib.h:
 *
 *   fill    fib_neigh_fill_v4() / fib_neigh_fill_v6(): the lookup
 *           parameters from an IPv4/IPv6 header;
 *   decide  fib_neigh_decide(): one bpf_fib_lookup(), and what to do:
 *           redirect with the MACs it returned, bpf_redirect_neigh(), or
 *           hand the packet to the stack;
 *   act     fib_neigh_act_tc() / fib_neigh_act_xdp(): write the MACs and
 *           redirect, or return the pass verdict.
 *
 *   struct fib_neigh fn = {};
 *
 *   if (!fib_neigh_fill_v4(&fn, iph, data_end, skb->len - ETH_HLEN,
 *                          skb->ingress_ifindex))
 *           return TC_ACT_OK;
 *   fib_neigh_decide(skb, &fn, FIB_NEIGH_MODE_STATE_AWARE,
 *                    FIB_NEIGH_FALLBACK_NEIGH, false);
 *   if (fn.action != FIB_NEIGH_PASS)
 *           fib_neigh_dec_ttl(&fn, iph, data_end);
 *   return fib_neigh_act_tc(&fn, eth, data_end);
 *
 * One object, every kernel. Whether the running kernel has the series is
 * read at load time, by CO-RE: libbpf checks whether the kernel's BTF has
 * nud_state in struct bpf_fib_lookup and patches a constant into the
 * program, so the verifier only sees the branch that kernel supports. No
 * loader-side probe is needed. On a kernel without the series the caller's
 * fallback runs:
 *
 *   FIB_NEIGH_FALLBACK_NEIGH   tc: bpf_redirect_neigh() for every packet,
 *                              what Cilium and Calico do today; in XDP
 *                              (which has no bpf_redirect_neigh()) the same
 *                              as FIB_NEIGH_FALLBACK_PASS;
 *   FIB_NEIGH_FALLBACK_CACHED  bpf_redirect() with the cached MACs, as
 *                              before the series (the stale-MAC problem);
 *   FIB_NEIGH_FALLBACK_PASS    every packet to the stack, which resolves
 *                              neighbours properly.
 *
 * A kernel with NEIGH_STATE but without NEIGH_REFRESH (the first patch
 * alone) rejects FIB_NEIGH_MODE_REFRESH's lookup with -EINVAL; the header
 * then takes the fallback for that packet too.
 *
 * A loader that wants to know before attaching can probe: load a program
 * that calls bpf_fib_lookup() with the flag under BPF_PROG_TEST_RUN; a
 * kernel that does not know a flag returns -EINVAL before any lookup.
 * `fibneigh probe` in this repository does that (bpf/src/probe.rs).
 *
 * Needs: <linux/bpf.h> (any version: the numbers this header uses are its
 * own), libbpf's <bpf/bpf_helpers.h>, <bpf/bpf_core_read.h> and
 * <bpf/bpf_endian.h>, a compiler with CO-RE (clang >= 12), and a kernel
 * with BTF (CONFIG_DEBUG_INFO_BTF) for the CO-RE check; tc's fallback needs
 * bpf_redirect_neigh() (Linux 5.10).
 */
#ifndef __FIB_NEIGH_H
#define __FIB_NEIGH_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

/* bpf_fib_lookup() flags; the first is upstream since Linux 4.18. */
#define FIB_NEIGH_F_DIRECT		(1U << 0)
/* NOT UPSTREAM YET: the series' flags. */
#define FIB_NEIGH_F_NEIGH_STATE		(1U << 8)
#define FIB_NEIGH_F_NEIGH_REFRESH	(1U << 9)

/* NUD_* states (include/uapi/linux/neighbour.h). */
#define FIB_NEIGH_NUD_REACHABLE		0x02
#define FIB_NEIGH_NUD_STALE		0x04
#define FIB_NEIGH_NUD_NOARP		0x40
#define FIB_NEIGH_NUD_PERMANENT		0x80
#define FIB_NEIGH_NUD_CONNECTED		(FIB_NEIGH_NUD_PERMANENT | \
					 FIB_NEIGH_NUD_NOARP | \
					 FIB_NEIGH_NUD_REACHABLE)

/* BPF_FIB_LKUP_RET_* (upstream). */
#define FIB_NEIGH_RET_SUCCESS		0
#define FIB_NEIGH_RET_NO_NEIGH		7

#define FIB_NEIGH_AF_INET		2
#define FIB_NEIGH_AF_INET6		10
#define FIB_NEIGH_EINVAL		22

/*
 * struct bpf_fib_lookup as the series defines it: nud_state shares storage
 * with sport (an input the helper does not read). Restated so that a
 * program builds against any <linux/bpf.h>; the helper takes 64 bytes.
 */
struct fib_neigh_params {
	__u8	family;
	__u8	l4_protocol;
	union {
		__be16	sport;
		/* NOT UPSTREAM YET: an output; the union's second byte is
		 * reserved and written 0 with it
		 */
		__u8	nud_state;
	};
	__be16	dport;
	union {
		__u16	tot_len;
		__u16	mtu_result;
	};
	__u32	ifindex;
	union {
		__u8	tos;
		__be32	flowinfo;
		__u32	rt_metric;
	};
	union {
		__be32	ipv4_src;
		__u32	ipv6_src[4];
	};
	union {
		__be32	ipv4_dst;
		__u32	ipv6_dst[4];
	};
	union {
		struct {
			__be16	h_vlan_proto;
			__be16	h_vlan_TCI;
		};
		__u32	tbid;
	};
	union {
		__u32	mark;
		struct {
			__u8	smac[6];
			__u8	dmac[6];
		};
	};
};

_Static_assert(sizeof(struct fib_neigh_params) == 64,
	       "struct fib_neigh_params must match struct bpf_fib_lookup");

/*
 * The CO-RE probe: a flavour of the kernel's struct bpf_fib_lookup (libbpf
 * ignores the ___ suffix when it matches it against the kernel's BTF) with
 * the field the series adds.
 */
struct bpf_fib_lookup___fib_neigh {
	__u8	nud_state;
} __attribute__((preserve_access_index));

/* Whether the running kernel has the series: a constant after loading. */
static __always_inline int fib_neigh_kernel_has_state(void)
{
	return bpf_core_field_exists(struct bpf_fib_lookup___fib_neigh,
				     nud_state);
}

/* What the caller asks for on a kernel with the series. */
enum fib_neigh_mode {
	/*
	 * NEIGH_STATE: bpf_redirect() only while the entry is connected
	 * (REACHABLE, PERMANENT, NOARP); otherwise the neighbour path
	 * (tc: bpf_redirect_neigh(), XDP: the stack) re-validates it.
	 */
	FIB_NEIGH_MODE_STATE_AWARE,
	/*
	 * NEIGH_STATE | NEIGH_REFRESH: bpf_redirect() on every SUCCESS, as
	 * before, and the kernel kicks a STALE entry into re-validation, so
	 * a moved neighbour is found by its probes.
	 */
	FIB_NEIGH_MODE_REFRESH,
};

/* What the caller does on a kernel without the series (see the top). */
enum fib_neigh_fallback {
	FIB_NEIGH_FALLBACK_NEIGH,
	FIB_NEIGH_FALLBACK_CACHED,
	FIB_NEIGH_FALLBACK_PASS,
};

/* The decision. */
enum fib_neigh_action {
	FIB_NEIGH_PASS,			/* to the stack, untouched */
	FIB_NEIGH_REDIRECT,		/* MACs from the lookup + bpf_redirect() */
	FIB_NEIGH_REDIRECT_NEIGH,	/* bpf_redirect_neigh(); tc only */
	FIB_NEIGH_NR_ACTIONS,
};

/* Which branch decided. */
enum fib_neigh_path {
	FIB_NEIGH_PATH_STATE,		/* the kernel has the series */
	FIB_NEIGH_PATH_FALLBACK,	/* it has not (or refused the flags) */
	FIB_NEIGH_NR_PATHS,
};

struct fib_neigh {
	struct fib_neigh_params	params;
	long			rc;	/* what bpf_fib_lookup() returned */
	enum fib_neigh_action	action;
	enum fib_neigh_path	path;
	__u8			nud_state;	/* valid on the state path */
	int			v6;
};

/* ---- fill ----------------------------------------------------------- */

/*
 * Fill @fn from the IPv4 header at @iph (in the packet, before @data_end)
 * arriving on @ifindex; @l3_len is the packet's length from @iph on (tc:
 * skb->len less the link-layer header, XDP: data_end - iph), which its
 * tot_len must not exceed. Returns 0 for a packet not to be forwarded here:
 * truncated, with options, a tot_len that does not fit, or a TTL that
 * expires.
 */
static __always_inline int fib_neigh_fill_v4(struct fib_neigh *fn,
					     struct iphdr *iph, void *data_end,
					     __u32 l3_len, __u32 ifindex)
{
	__u16 tot_len;

	if ((void *)(iph + 1) > data_end)
		return 0;
	if (iph->version != 4 || iph->ihl != 5 || iph->ttl <= 1)
		return 0;
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < sizeof(*iph) || tot_len > l3_len)
		return 0;
	fn->v6 = 0;
	fn->params.family = FIB_NEIGH_AF_INET;
	fn->params.tos = iph->tos;
	fn->params.l4_protocol = iph->protocol;
	fn->params.tot_len = tot_len;
	fn->params.ipv4_src = iph->saddr;
	fn->params.ipv4_dst = iph->daddr;
	fn->params.ifindex = ifindex;
	return 1;
}

/*
 * As fib_neigh_fill_v4(), for IPv6: also 0 for a jumbogram (payload
 * length 0) or hop-by-hop options.
 */
static __always_inline int fib_neigh_fill_v6(struct fib_neigh *fn,
					     struct ipv6hdr *ip6h,
					     void *data_end, __u32 l3_len,
					     __u32 ifindex)
{
	__u32 payload;

	if ((void *)(ip6h + 1) > data_end)
		return 0;
	if (ip6h->version != 6 || ip6h->hop_limit <= 1 || ip6h->nexthdr == 0)
		return 0;
	payload = bpf_ntohs(ip6h->payload_len);
	if (payload == 0 || payload + sizeof(*ip6h) > l3_len)
		return 0;
	fn->v6 = 1;
	fn->params.family = FIB_NEIGH_AF_INET6;
	fn->params.flowinfo = *(__be32 *)ip6h & bpf_htonl(0x0fffffff);
	fn->params.l4_protocol = ip6h->nexthdr;
	fn->params.tot_len = payload + sizeof(*ip6h);
	__builtin_memcpy(fn->params.ipv6_src, &ip6h->saddr, 16);
	__builtin_memcpy(fn->params.ipv6_dst, &ip6h->daddr, 16);
	fn->params.ifindex = ifindex;
	return 1;
}

/* ---- decide --------------------------------------------------------- */

/* The neighbour path: tc has bpf_redirect_neigh(), XDP has the stack. */
static __always_inline enum fib_neigh_action fib_neigh_slow(int xdp)
{
	return xdp ? FIB_NEIGH_PASS : FIB_NEIGH_REDIRECT_NEIGH;
}

static __always_inline enum fib_neigh_action
fib_neigh_decide_fallback(void *ctx, struct fib_neigh *fn,
			  enum fib_neigh_fallback fallback, int xdp)
{
	fn->path = FIB_NEIGH_PATH_FALLBACK;
	if (fallback == FIB_NEIGH_FALLBACK_PASS ||
	    (fallback == FIB_NEIGH_FALLBACK_NEIGH && xdp)) {
		fn->rc = 0;
		return FIB_NEIGH_PASS;
	}
	fn->rc = bpf_fib_lookup(ctx, (struct bpf_fib_lookup *)&fn->params,
				sizeof(fn->params), 0);
	if (fallback == FIB_NEIGH_FALLBACK_CACHED)
		return fn->rc == FIB_NEIGH_RET_SUCCESS ? FIB_NEIGH_REDIRECT :
							 FIB_NEIGH_PASS;
	/* FIB_NEIGH_FALLBACK_NEIGH in tc. */
	if (fn->rc == FIB_NEIGH_RET_SUCCESS || fn->rc == FIB_NEIGH_RET_NO_NEIGH)
		return FIB_NEIGH_REDIRECT_NEIGH;
	return FIB_NEIGH_PASS;
}

/*
 * One bpf_fib_lookup() for @fn (filled), and the action; sets fn->rc,
 * fn->action, fn->path and, on the state path, fn->nud_state. @xdp must be
 * a compile-time constant: an XDP program never calls bpf_redirect_neigh().
 */
static __always_inline enum fib_neigh_action
fib_neigh_decide(void *ctx, struct fib_neigh *fn, enum fib_neigh_mode mode,
		 enum fib_neigh_fallback fallback, int xdp)
{
	__u32 flags = FIB_NEIGH_F_NEIGH_STATE;
	long rc;

	if (!fib_neigh_kernel_has_state()) {
		fn->action = fib_neigh_decide_fallback(ctx, fn, fallback, xdp);
		return fn->action;
	}
	if (mode == FIB_NEIGH_MODE_REFRESH)
		flags |= FIB_NEIGH_F_NEIGH_REFRESH;
	rc = bpf_fib_lookup(ctx, (struct bpf_fib_lookup *)&fn->params,
			    sizeof(fn->params), flags);
	if (rc == -FIB_NEIGH_EINVAL) {
		/* The first patch alone: no NEIGH_REFRESH. */
		fn->action = fib_neigh_decide_fallback(ctx, fn, fallback, xdp);
		return fn->action;
	}
	fn->rc = rc;
	fn->path = FIB_NEIGH_PATH_STATE;
	fn->nud_state = 0;
	if (rc == FIB_NEIGH_RET_SUCCESS) {
		/* Written on SUCCESS (and NO_NEIGH, FRAG_NEEDED) only. */
		fn->nud_state = ((struct bpf_fib_lookup___fib_neigh *)
				 &fn->params)->nud_state;
		if (mode == FIB_NEIGH_MODE_REFRESH ||
		    (fn->nud_state & FIB_NEIGH_NUD_CONNECTED))
			fn->action = FIB_NEIGH_REDIRECT;
		else
			fn->action = fib_neigh_slow(xdp);
	} else if (rc == FIB_NEIGH_RET_NO_NEIGH) {
		fn->action = fib_neigh_slow(xdp);
	} else {
		fn->action = FIB_NEIGH_PASS;
	}
	return fn->action;
}

/* ---- act ------------------------------------------------------------ */

/*
 * One hop less in the IPv4 (@v6 0) or IPv6 header at @l3, the IPv4 header
 * checksum fixed incrementally.
 */
static __always_inline void fib_neigh_dec_ttl_l3(int v6, void *l3,
						 void *data_end)
{
	if (v6) {
		struct ipv6hdr *ip6h = l3;

		if ((void *)(ip6h + 1) <= data_end)
			ip6h->hop_limit--;
	} else {
		struct iphdr *iph = l3;
		__u32 check;

		if ((void *)(iph + 1) > data_end)
			return;
		check = iph->check;
		check += bpf_htons(0x0100);
		iph->check = (__sum16)(check + (check >= 0xffff));
		iph->ttl--;
	}
}

/*
 * One hop less (a router's duty; call it only when forwarding). @l3 is the
 * header fill looked at.
 */
static __always_inline void fib_neigh_dec_ttl(const struct fib_neigh *fn,
					      void *l3, void *data_end)
{
	fib_neigh_dec_ttl_l3(fn->v6, l3, data_end);
}

/*
 * The nexthop the lookup wrote back into @p's destination, for
 * bpf_redirect_neigh(): IPv4, or IPv6 (also an IPv4 route via an IPv6
 * gateway, which the lookup reports as family AF_INET6).
 */
static __always_inline void fib_neigh_nexthop(const struct fib_neigh_params *p,
					      struct bpf_redir_neigh *nh)
{
	if (p->family == FIB_NEIGH_AF_INET) {
		nh->nh_family = FIB_NEIGH_AF_INET;
		nh->ipv4_nh = p->ipv4_dst;
	} else {
		nh->nh_family = FIB_NEIGH_AF_INET6;
		__builtin_memcpy(nh->ipv6_nh, p->ipv6_dst, 16);
	}
}

/* The MACs the lookup returned, written into the frame. */
static __always_inline void fib_neigh_set_macs(const struct fib_neigh *fn,
					       struct ethhdr *eth)
{
	__builtin_memcpy(eth->h_dest, fn->params.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fn->params.smac, ETH_ALEN);
}

/* Carry out fn->action in tc; returns the program's verdict. */
static __always_inline int fib_neigh_act_tc(const struct fib_neigh *fn,
					    struct ethhdr *eth,
					    void *data_end)
{
	struct bpf_redir_neigh nh = {};

	switch (fn->action) {
	case FIB_NEIGH_REDIRECT:
		if ((void *)(eth + 1) > data_end)
			return TC_ACT_SHOT;
		fib_neigh_set_macs(fn, eth);
		return bpf_redirect(fn->params.ifindex, 0);
	case FIB_NEIGH_REDIRECT_NEIGH:
		fib_neigh_nexthop(&fn->params, &nh);
		return bpf_redirect_neigh(fn->params.ifindex, &nh, sizeof(nh),
					  0);
	default:
		return TC_ACT_OK;
	}
}

/* Carry out fn->action in XDP; returns the program's verdict. */
static __always_inline int fib_neigh_act_xdp(const struct fib_neigh *fn,
					     struct ethhdr *eth,
					     void *data_end)
{
	if (fn->action != FIB_NEIGH_REDIRECT)
		return XDP_PASS;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	fib_neigh_set_macs(fn, eth);
	return bpf_redirect(fn->params.ifindex, 0);
}

#endif /* __FIB_NEIGH_H */
