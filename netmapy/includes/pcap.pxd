# libpcap declarations (capture files and filter compilation).
from libc.stdint cimport uint32_t
from libc.stdio cimport FILE
from netmapy.includes.system cimport timeval

cdef extern from "<pcap/pcap.h>" nogil:
    ctypedef struct pcap_t:
        pass
    ctypedef struct pcap_dumper_t:
        pass
    struct pcap_pkthdr:
        timeval ts
        uint32_t caplen
        uint32_t len
    struct bpf_insn:
        unsigned short code
        unsigned char jt
        unsigned char jf
        uint32_t k
    struct bpf_program:
        unsigned int bf_len
        bpf_insn *bf_insns
    enum:
        PCAP_ERRBUF_SIZE
        PCAP_ERROR
        PCAP_ERROR_BREAK
        PCAP_TSTAMP_PRECISION_MICRO
        PCAP_TSTAMP_PRECISION_NANO
        DLT_EN10MB
    pcap_t *pcap_open_offline_with_tstamp_precision(const char *fname, unsigned int precision, char *errbuf)
    pcap_t *pcap_open_dead(int linktype, int snaplen)
    pcap_t *pcap_open_dead_with_tstamp_precision(int linktype, int snaplen, unsigned int precision)
    int pcap_next_ex(pcap_t *p, pcap_pkthdr **hdr, const unsigned char **data)
    char *pcap_geterr(pcap_t *p)
    int pcap_datalink(pcap_t *p)
    const char *pcap_datalink_val_to_name(int dlt)
    int pcap_get_tstamp_precision(pcap_t *p)
    void pcap_close(pcap_t *p)
    pcap_dumper_t *pcap_dump_open(pcap_t *p, const char *fname)
    void pcap_dump(unsigned char *user, const pcap_pkthdr *h, const unsigned char *sp)
    int pcap_dump_flush(pcap_dumper_t *d)
    void pcap_dump_close(pcap_dumper_t *d)
    FILE *pcap_dump_file(pcap_dumper_t *d)
    int pcap_compile(pcap_t *p, bpf_program *fp, const char *str, int optimize, uint32_t netmask)
    void pcap_freecode(bpf_program *fp)
    unsigned int bpf_filter(const bpf_insn *pc, const unsigned char *pkt, unsigned int wirelen, unsigned int buflen)
    const char *pcap_lib_version()
