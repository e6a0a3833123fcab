/*
 * libFuzzer harness for the middlebox packet parser and rule evaluation
 * (middlebox/includes/mb_filter.h), built with AddressSanitizer by
 * tests/test_filters.py:  clang -fsanitize=fuzzer,address -I middlebox/includes
 *
 * The first input byte picks one of a few rule sets; the rest is the frame.
 * ASan turns any read outside the frame into a crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "mb_filter.h"

static struct mb_rule rules[4];
static struct mb_bucket buckets[64];
static struct mb_ruleset rs = { rules, 4, MB_ACT_ALLOW, 64, buckets };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mb_pkt p;
    uint32_t ri;
    int lim;
    uint8_t *frame;
    static uint64_t now = 1;
    if (size < 1)
        return 0;
    /* a copy of exactly the frame, so ASan sees its real end */
    frame = malloc(size - 1 ? size - 1 : 1);
    memcpy(frame, data + 1, size - 1);
    memset(rules, 0, sizeof(rules));
    rules[0].action = MB_ACT_RATELIMIT; rules[0].match = MB_R_PROTO | MB_R_DPORT;
    rules[0].proto = 17; rules[0].dport_lo = 53; rules[0].dport_hi = 53;
    rules[0].rate_pps = 1 + data[0]; rules[0].burst = 3;
    rules[1].action = MB_ACT_DENY; rules[1].match = MB_R_SRC;
    rules[1].src_hi = 0; rules[1].src_lo = 0x0000ffffc0000200ULL;
    rules[1].src_mask_hi = ~0ULL; rules[1].src_mask_lo = 0xffffffffffffff00ULL;
    rules[2].action = MB_ACT_ALLOW; rules[2].match = MB_R_SPORT | MB_R_IP6;
    rules[2].sport_lo = 1000; rules[2].sport_hi = 2000;
    rules[3].action = MB_ACT_DENY; rules[3].match = MB_R_PROTO; rules[3].proto = data[0];
    mb_parse(frame, (uint32_t)(size - 1), &p);
    mb_ruleset_eval(&rs, &p, now += 1000, &ri, &lim);
    if (ri > rs.nrules)
        abort();
    free(frame);
    return 0;
}
