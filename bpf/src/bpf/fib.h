/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The project's view of struct bpf_fib_lookup and the new uAPI.
 *
 * The programs must build before a patched kernel (or its headers) exists,
 * so the layout of Linux 7.3's struct bpf_fib_lookup is restated here with
 * the series' addition: nud_state shares storage with sport. The layout is
 * checked against the size the helper expects (64 bytes).
 */
#ifndef FIBNEIGH_FIB_H
#define FIBNEIGH_FIB_H

#ifndef BPF_FIB_LOOKUP_DIRECT
#define BPF_FIB_LOOKUP_DIRECT		(1U << 0)
#define BPF_FIB_LOOKUP_OUTPUT		(1U << 1)
#endif
#define FIBNEIGH_LOOKUP_SKIP_NEIGH	(1U << 2)
#define FIBNEIGH_LOOKUP_TBID		(1U << 3)
#define FIBNEIGH_LOOKUP_SRC		(1U << 4)
#define FIBNEIGH_LOOKUP_MARK		(1U << 5)
/* The series' flags (docs/design.md). */
#define FIBNEIGH_LOOKUP_NEIGH_STATE	(1U << 8)
#define FIBNEIGH_LOOKUP_NEIGH_REFRESH	(1U << 9)

/* include/uapi/linux/neighbour.h */
#define FIBNEIGH_NUD_INCOMPLETE	0x01
#define FIBNEIGH_NUD_REACHABLE	0x02
#define FIBNEIGH_NUD_STALE	0x04
#define FIBNEIGH_NUD_DELAY	0x08
#define FIBNEIGH_NUD_PROBE	0x10
#define FIBNEIGH_NUD_FAILED	0x20
#define FIBNEIGH_NUD_NOARP	0x40
#define FIBNEIGH_NUD_PERMANENT	0x80
#define FIBNEIGH_NUD_CONNECTED	(FIBNEIGH_NUD_PERMANENT | FIBNEIGH_NUD_NOARP | \
				 FIBNEIGH_NUD_REACHABLE)

/* Return codes of bpf_fib_lookup() (enum in linux/bpf.h since 4.18). */
#define FIBNEIGH_RET_SUCCESS		0
#define FIBNEIGH_RET_NO_NEIGH		7
#define FIBNEIGH_RET_FRAG_NEEDED	8
#define FIBNEIGH_RET_MAX		11	/* one past VLAN_FAILURE (10) */

struct fib_params {
	__u8	family;
	__u8	l4_protocol;
	union {
		__be16	sport;
		__u16	nud_state;	/* output with ..._NEIGH_STATE */
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

_Static_assert(sizeof(struct fib_params) == 64,
	       "struct fib_params must match struct bpf_fib_lookup");

#endif /* FIBNEIGH_FIB_H */
