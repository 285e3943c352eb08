// SPDX-License-Identifier: GPL-2.0
/*
 * The lab switch's announcement filter (tc, on a bridge port's egress):
 * while `enabled`, drop gratuitous ARP (sender IP == target IP, request or
 * reply) and unsolicited neighbour advertisements (Solicited flag clear),
 * so the port's far side never hears an IP move to a new MAC except by
 * asking. Everything else passes, including the answers to its own ARP
 * requests and neighbour solicitations.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define IPPROTO_ICMPV6		58
#define NDISC_NEIGHBOUR_ADVERTISEMENT	136
#define NA_FLAG_SOLICITED	0x40	/* in the first flags byte */

/* Written by userspace through the memory-mapped .bss. */
__u32 enabled = 0;
__u64 dropped_arp = 0;
__u64 dropped_na = 0;

/* ARP for IPv4 over Ethernet, as on the wire. */
struct arp_eth_ipv4 {
	__be16 hrd;
	__be16 pro;
	__u8 hln;
	__u8 pln;
	__be16 op;
	__u8 sha[ETH_ALEN];
	__u8 sip[4];
	__u8 tha[ETH_ALEN];
	__u8 tip[4];
} __attribute__((packed));

static __always_inline bool gratuitous_arp(void *l3, void *data_end)
{
	struct arp_eth_ipv4 *arp = l3;

	if ((void *)(arp + 1) > data_end)
		return false;
	if (arp->hrd != bpf_htons(1) || arp->pro != bpf_htons(ETH_P_IP) ||
	    arp->hln != ETH_ALEN || arp->pln != 4)
		return false;
	return __builtin_memcmp(arp->sip, arp->tip, 4) == 0;
}

static __always_inline bool unsolicited_na(void *l3, void *data_end)
{
	struct ipv6hdr *ip6 = l3;
	__u8 *icmp = (void *)(ip6 + 1);

	if ((void *)(icmp + 8) > data_end)
		return false;
	if (ip6->nexthdr != IPPROTO_ICMPV6)
		return false;
	if (icmp[0] != NDISC_NEIGHBOUR_ADVERTISEMENT)
		return false;
	return !(icmp[4] & NA_FLAG_SOLICITED);
}

SEC("tc")
int drop_announcements(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if (!enabled || (void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_ARP) &&
	    gratuitous_arp(eth + 1, data_end)) {
		__sync_fetch_and_add(&dropped_arp, 1);
		return TC_ACT_SHOT;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6) &&
	    unsolicited_na(eth + 1, data_end)) {
		__sync_fetch_and_add(&dropped_na, 1);
		return TC_ACT_SHOT;
	}
	return TC_ACT_OK;
}
